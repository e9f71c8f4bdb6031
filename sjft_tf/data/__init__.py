"""Data layer: ingestion into sharded TFRecords, the dataset spec, tf.data readers."""
