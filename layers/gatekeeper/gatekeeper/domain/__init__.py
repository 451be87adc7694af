"""The gatekeeper's domain: events, findings, policy, verdicts. Pure Python, no AWS SDK."""
