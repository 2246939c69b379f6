"""Alerts on the data plane: the evaluator that measures each alert rule over ClickHouse,
moves it through its stages and publishes its transitions; the activity reported to the
control plane; the preview series.

- :mod:`.events`: :class:`~.events.AlertActivity` and :func:`~.events.publish_activity`
  (stream ``alert-activity``, forwarded to the control plane);
- :mod:`.rules`: the rules pushed into ``federation-config``, and the served projects;
- :mod:`.measure`: a rule's value over a window (chart queries; drift; no data);
- :mod:`.stages`: the stages state machine (warning, critical, resolution; minimum
  duration; manual resolve), pure;
- :mod:`.state`: each rule's state and outbox in the ``alert-state`` bucket;
- :mod:`.notice`: what a transition hands to the notifications side, and its link;
- :mod:`.evaluator`: one evaluation of every rule, and the loop (run by the Ray actor
  :mod:`apiary.actors.alert_evaluator`);
- :mod:`.preview`: the measured series of a rule for a chart.

``docs/alerts.md`` ("Evaluation") is the user's view.
"""
