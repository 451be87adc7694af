"""Local stand-ins for a deployment (moto-backed), shared by the demo and the tests."""
