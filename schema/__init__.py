"""The contract both sides share: events, read-model tables and their migrations."""
