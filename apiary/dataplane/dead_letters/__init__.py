"""Dead letters over HTTP, for the operator only: ``/v1/admin/dead-letters``
(:mod:`apiary.dataplane.dead_letters.routes`). What a dead letter is, and what replaying
and purging guarantee, is :mod:`apiary.queue.dead_letters`; who the operator is,
:func:`apiary.dataplane.auth.require_operator`."""
