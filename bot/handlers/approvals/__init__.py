"""Approval commands and card taps: 申请, 待我审批, 审批 #A, 同意, 驳回, 转交 #A, 撤回, 取消审批, 重新提交,
and the 同意 / 驳回 / 转交 / 一键转任务 buttons.

Every action on a request first locks its row (`FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE`
already serialises writers), so two approvers of a 会签 tapping at the same moment are counted one
after the other: both votes stand, exactly one of them completes the stage, and the next stage's
approvers are asked once (their messages also carry per-step dedupe keys). A vote is a row with a
unique (step, voter): a retried callback, or a tap and a command racing, cannot vote twice.

Who is asked when: all stages' approvers are resolved at submission (so a missing department head
is refused at once, not halfway), and `on_self` is applied when a stage starts. Each approver of
the current stage gets a private card and a wait row, which the nag and escalation rules chase.
When the flow ends, the initiator and the request's project groups hear the result with its trail.

The package, one module per job: `forms` (reading a request's fields, planning its stages), `flow` (the
state machine), `commands`, `taps` (card buttons), `native` (mirroring a platform's own approvals) and
`describers` (how a wait on an approval reads in 待我处理, nags and escalations); `base` holds what they share.
"""

from __future__ import annotations

from collabbot.bot.handlers.approvals.commands import (
    HELP_LINES,
    apply,
    approve_command,
    cancel,
    my_approvals,
    reject_command,
    resubmit,
    show,
    transfer,
    withdraw,
)
from collabbot.bot.handlers.approvals.describers import WAIT_DESCRIBERS
from collabbot.bot.handlers.approvals.native import native
from collabbot.bot.handlers.approvals.taps import card_action

__all__ = ["HELP_LINES", "WAIT_DESCRIBERS", "apply", "approve_command", "cancel", "card_action", "my_approvals",
           "native", "reject_command", "resubmit", "show", "transfer", "withdraw"]
