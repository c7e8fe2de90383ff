"""What is learned: functional network builders and the GAN wrappers. No file I/O here."""
