"""Notifications: alert transitions delivered to email, Slack and signed webhooks.

- :mod:`.message`: the message on ``notifications.<org>.<project>``, its ``Nats-Msg-Id``
  and :func:`~.message.publish_notification`;
- :mod:`.channels`: channels as the data plane sees them, their routing by scope and
  severity, and the directory that reads them from the federation bucket (secrets sealed);
- :mod:`.senders`: one attempt at one delivery (SMTP, SES, Slack Block Kit, signed webhook);
- :mod:`.deliveries`: the records of finished deliveries;
- :mod:`.alerting`: the alert evaluator's transitions published as alert messages (the
  evaluator's ``notify``);
- :mod:`.service`: the notifier (retries, dead letters, exactly once as the receiver sees
  it), run by the Ray actor :mod:`apiary.actors.notifier`.

``docs/alerts.md`` is the user's view.
"""
