"""Operator tooling: the gatekeeper command and the local deployment on moto. Not shipped
in the Lambda layer: no function imports it."""
