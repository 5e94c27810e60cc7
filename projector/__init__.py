"""The projector: folds the delivery event stream into the read model."""
