"""The floor page (`serve --floor`): a hello-world page whose button reruns it, and nothing of the app."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.support.corpora import REPO


def test_the_floor_says_hello_and_counts_its_reruns() -> None:
    at = AppTest.from_file(str(REPO / "app" / "floor.py"), default_timeout=60).run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Hello, world"]
    assert at.markdown[0].value == "Reruns: 0"
    at.button(key="floor_rerun").click().run()
    at.button(key="floor_rerun").click().run()
    assert at.markdown[0].value == "Reruns: 2"
    assert not at.sidebar.selectbox and not at.get("plotly_chart")  # no corpus, no chart: only Streamlit's cost


def test_the_floor_with_a_chart_draws_one_small_chart() -> None:
    at = AppTest.from_file(str(REPO / "app" / "floor.py"), default_timeout=60)
    at.query_params["chart"] = "1"
    at.run()
    assert not at.exception
    (chart,) = at.get("plotly_chart")
    assert '"type":"bar"' in chart.proto.spec.replace(" ", "")


def test_the_floor_with_parts_draws_one_of_each() -> None:
    at = AppTest.from_file(str(REPO / "app" / "floor.py"), default_timeout=60)
    at.query_params["with"] = "dataframe,table,code,markdown,widgets,sidebar,metrics,nonsense"
    at.run()
    assert not at.exception
    assert len(at.dataframe) == 1 and len(at.table) == 1 and len(at.code) == 1 and len(at.metric) == 4
    assert len(at.main.selectbox) == 10 and len(at.sidebar.selectbox) == 1
    assert sum(m.value.startswith("**step ") for m in at.markdown) == 20
