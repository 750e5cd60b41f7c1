"""Feature services: what training and serving ask Feast for."""

from feast import FeatureService
from real_views import item_features, user_features

training = FeatureService(name="training", features=[user_features, item_features], description="Real user + item features for training rows.")
serving = FeatureService(name="serving", features=[user_features], description="User features read online by the recommender.")
