"""ECR Scan Gatekeeper: judge every pushed image against a severity policy."""

__version__ = "0.1.0"
