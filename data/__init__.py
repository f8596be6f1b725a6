"""Datasets: layouts of UCF11, Hollywood2, YouTube Celebrities, YouTube-8M and the synthetic demo set;
torch Datasets over the on-disk cache; batching. Bundled samples and models live beside the code."""
