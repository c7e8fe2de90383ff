"""What the data is: catalogs, loaders, phantom, preprocessing, samplers, splits, tf.data pipelines."""
