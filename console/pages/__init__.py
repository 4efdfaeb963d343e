"""The console's pages, one module per area: sign-in, events, flow, dead letters, audit."""
