"""Log shipping: tail, parse, ECS documents, registry, Elasticsearch (or a local sink)."""
