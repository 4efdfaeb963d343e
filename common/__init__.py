"""Code the producer and the consumer both need: Service Bus settings and client set-up."""
