"""Fakes of external services at the network edge (HTTP APIs), for tests."""

from tests.fakes.openai_api import FakeOpenAI, Reply, Request, error_reply

__all__ = ["FakeOpenAI", "Reply", "Request", "error_reply"]
