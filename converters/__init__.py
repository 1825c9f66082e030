"""Dataset readers and writers: raw dataset -> FaceRecord -> training-set formats."""
