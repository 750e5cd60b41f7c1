"""Two-tower recommender: TorchRec model, training, evaluation, serving."""
