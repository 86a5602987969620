"""Alert delivery: routes, grouping, inhibition, silences, a durable outbox, channels."""
