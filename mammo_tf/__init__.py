"""mammo-tf: GAN super-resolution and synthesis for calcifications in mammograms.

Importing the package must stay cheap: no TensorFlow, no OpenCV here.
"""

__version__ = "0.1.0"
