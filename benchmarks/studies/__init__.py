"""Host-side studies: they train, convert and time models to answer one question each."""
