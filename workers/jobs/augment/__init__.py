"""Adversarial data augmentation (``augment`` jobs): adversarial and mediate samples,
rebalancing toward under-represented classes, and AdvAmd fine-tuning of a classifier."""
