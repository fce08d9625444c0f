"""Course recommendations: Surprise SVD trained for ranking, served from numpy factors."""

from recommender.entities import CourseInfo, Suggestion
from recommender.model import FactorModel, ModelParams, RankingSVD
from recommender.service import Recommender, load_or_none
from recommender.signals import Interaction, SignalWeights, pseudo_ratings

__all__ = [
    "CourseInfo",
    "FactorModel",
    "Interaction",
    "ModelParams",
    "RankingSVD",
    "Recommender",
    "SignalWeights",
    "Suggestion",
    "load_or_none",
    "pseudo_ratings",
]
