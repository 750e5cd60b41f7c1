def test_fixture_builds(feast_env):
    assert feast_env.materialize["views"]["user_features"]["entities_written"] == 1500
