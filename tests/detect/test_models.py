import pytest

from linewatch.config import AnomalySettings
from linewatch.detect.anomaly import MachineModel
from linewatch.detect.mewma import MewmaModel, MewmaSettings
from linewatch.detect.models import AnomalyModel, make_model, model_class


def test_the_plant_setting_picks_the_kind_and_both_kinds_answer_the_same_questions():
    assert isinstance(make_model("m", AnomalySettings(model="mewma")), MewmaModel)
    assert isinstance(make_model("m", AnomalySettings(model="halfspace")), MachineModel)
    assert isinstance(make_model("m", AnomalySettings(model="mewma"), "halfspace"), MachineModel)
    for kind in ("mewma", "halfspace"):
        model = make_model("extruder-1", AnomalySettings(), kind)
        assert isinstance(model, AnomalyModel) and model.machine == "extruder-1" and model.phase == "warming_up"


def test_mewma_knobs_reach_the_mewma_model_only():
    knobs = MewmaSettings(smoothing=0.1)
    assert make_model("m", AnomalySettings(), "mewma", mewma=knobs).mewma == knobs
    assert isinstance(make_model("m", AnomalySettings(), "halfspace", mewma=knobs), MachineModel)


def test_an_unknown_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown anomaly model 'pca'; choose one of halfspace, mewma"):
        model_class("pca")
