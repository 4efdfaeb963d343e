"""Where the console reads from, one module per source: the producer's outbox, the
consumer's database, Service Bus (peeks), and the consumer's ``/status``."""
