"""The gatekeeper's use cases: judge (scan -> verdict), enforce (reconcile the image's tags
under its lease), announce (notices in verdict order), orchestrated by Gatekeeper.handle."""

from gatekeeper.service.gatekeeper import Gatekeeper
from gatekeeper.service.lease import Leases
from gatekeeper.service.ports import LeaseBusy, Result, ScanNotReady, StalePolicy

__all__ = ["Gatekeeper", "LeaseBusy", "Leases", "Result", "ScanNotReady", "StalePolicy"]
