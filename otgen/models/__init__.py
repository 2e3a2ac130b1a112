"""Networks: the autoencoder and the GAN family (know nothing of OT)."""
