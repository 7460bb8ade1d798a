"""Training with Lightning (the only wing that imports it): configs, the LightningModule, data module, augmentation, batch sizing, checkpoints, logs."""
