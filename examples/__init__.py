"""Example applications that embed the producer as a library."""
