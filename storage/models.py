"""The database tables, as SQLAlchemy 2.0 typed models.

Everything the bot knows lives here: the org (departments, people and their platform identities,
chats), projects and tasks with their progress, comments, help requests and dependencies, the
"waits" the reminder rules watch, the audit log, the outbox of messages to send and the receipts
of inbound events. Times are stored as naive UTC (`UtcDateTime` converts at the edge) so that SQLite
and PostgreSQL compare them the same way. This module must not import anything from `bot/`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in Python, naive UTC in the database (both back-ends compare them alike)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use the Clock's aware times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


class Department(Base):
    __tablename__ = "departments"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # "platform:department id" of the sync that made or met it: a renamed department stays this row
    platform_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    head_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", use_alter=True, name="fk_dept_head"))
    head: Mapped[User | None] = relationship(foreign_keys=[head_id], post_update=True)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    supervisor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    # when a complete org sync no longer listed any of their identities (they left the company); None while here
    left_at: Mapped[datetime | None]
    department: Mapped[Department | None] = relationship(foreign_keys=[department_id])
    supervisor: Mapped[User | None] = relationship(remote_side=[id], foreign_keys=[supervisor_id])
    identities: Mapped[list[Identity]] = relationship(back_populates="user")


class Identity(Base):
    """A person as one platform knows them."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("platform", "platform_user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    platform_user_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # when a complete sync of this platform stopped listing it; the user has left once all of theirs have
    left_at: Mapped[datetime | None]
    user: Mapped[User] = relationship(back_populates="identities")


class Chat(Base):
    __tablename__ = "chats"
    __table_args__ = (UniqueConstraint("platform", "platform_chat_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    platform_chat_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(200), default="")
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    initiating_dept_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    coordinator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    goal: Mapped[str] = mapped_column(Text, default="")
    kpis: Mapped[str] = mapped_column(Text, default="")
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    remarks: Mapped[str] = mapped_column(Text, default="")
    scope: Mapped[str] = mapped_column(Text, default="")  # 范围, confirmed by the heads with the goal and KPIs
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    initiating_dept: Mapped[Department | None] = relationship(foreign_keys=[initiating_dept_id])
    coordinator: Mapped[User | None] = relationship(foreign_keys=[coordinator_id])
    departments: Mapped[list[Department]] = relationship(secondary="project_departments")


class ProjectDepartment(Base):
    __tablename__ = "project_departments"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), primary_key=True)


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), index=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"), index=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id"))
    title: Mapped[str] = mapped_column(String(200))
    initiator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    initiating_dept_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="todo")
    priority: Mapped[str] = mapped_column(String(10), default="mid")
    deadline: Mapped[datetime | None]
    # the deadline set at creation, kept through approved extensions: statistics count against it
    original_deadline: Mapped[datetime | None]
    extensions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    deliverable_expected: Mapped[str] = mapped_column(Text, default="")
    deliverable: Mapped[str] = mapped_column(Text, default="")
    attachments: Mapped[list[Any]] = mapped_column(default=list)
    remarks: Mapped[str] = mapped_column(Text, default="")
    percent: Mapped[int] = mapped_column(Integer, default=0)
    acknowledged_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]  # first put in progress (progress discipline counts from then)
    submitted_at: Mapped[datetime | None]  # handed in for review; None again when returned
    last_progress_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    overdue_warned_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, default=1)
    # 紧急事务: answered within [rules.urgent] respond_hours, chased harder, listed first
    urgent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    project: Mapped[Project | None] = relationship()
    chat: Mapped[Chat | None] = relationship()
    owner: Mapped[User] = relationship(foreign_keys=[owner_id])
    initiator: Mapped[User] = relationship(foreign_keys=[initiator_id])
    initiating_dept: Mapped[Department | None] = relationship(foreign_keys=[initiating_dept_id])
    department: Mapped[Department | None] = relationship(foreign_keys=[department_id])
    collaborators: Mapped[list[User]] = relationship(secondary="task_collaborators")
    parent: Mapped[Task | None] = relationship(remote_side=[id], back_populates="subtasks")
    subtasks: Mapped[list[Task]] = relationship(back_populates="parent", order_by="Task.id")

    __table_args__ = (
        # The overdue sweep looks only at open tasks with a deadline that were not warned yet.
        Index(
            "ix_tasks_overdue_due",
            "deadline",
            postgresql_where=text("status <> 'done' AND status <> 'cancelled' AND overdue_warned_at IS NULL"),
            sqlite_where=text("status <> 'done' AND status <> 'cancelled' AND overdue_warned_at IS NULL"),
        ),
    )


class TaskCollaborator(Base):
    __tablename__ = "task_collaborators"
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)


class TaskDependency(Base):
    """`task_id` cannot be finished before `depends_on_id` is done."""

    __tablename__ = "task_dependencies"
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    depends_on_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)


class ProgressReport(Base):
    __tablename__ = "progress_reports"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(20))
    percent: Mapped[int] = mapped_column(Integer)
    done_text: Mapped[str] = mapped_column(Text, default="")
    next_step: Mapped[str] = mapped_column(Text, default="")
    problems: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    author: Mapped[User] = relationship()


class Comment(Base):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    text: Mapped[str] = mapped_column(Text)
    mentions: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime]
    author: Mapped[User] = relationship()


class HelpRequest(Base):
    __tablename__ = "help_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id"))
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    helper_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="open")
    answer: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    requester: Mapped[User] = relationship(foreign_keys=[requester_id])
    helper: Mapped[User] = relationship(foreign_keys=[helper_id])
    department: Mapped[Department | None] = relationship()


class Wait(Base):
    """Something a person must answer (an assignment, an approval step, a help request).

    The reminder rules derive nags and escalations from these rows alone: `next_due_at` is the time
    of the next step (nag or escalation), indexed for the open rows, so a restart loses nothing.
    """

    __tablename__ = "waits"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # assign | approval | help
    entity_type: Mapped[str] = mapped_column(String(20))
    entity_id: Mapped[int] = mapped_column(Integer)
    person_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id"))
    raised_at: Mapped[datetime]
    nags_sent: Mapped[int] = mapped_column(Integer, default=0)
    last_nag_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    next_due_at: Mapped[datetime | None]
    answered_at: Mapped[datetime | None]
    # closed without an answer because none was needed any more (task cancelled or reassigned, another
    # approver decided): not counted as a response in the reports
    withdrawn: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    person: Mapped[User] = relationship()
    chat: Mapped[Chat | None] = relationship()

    __table_args__ = (
        Index(
            "ix_waits_open_due",
            "next_due_at",
            postgresql_where=text("answered_at IS NULL AND next_due_at IS NOT NULL"),
            sqlite_where=text("answered_at IS NULL AND next_due_at IS NOT NULL"),
        ),
        Index("ix_waits_entity", "entity_type", "entity_id"),
    )


class WeeklyNote(Base):
    """A department head's 本周协作总结, shown in the weekly summary."""

    __tablename__ = "weekly_notes"
    __table_args__ = (UniqueConstraint("project_id", "department_id", "week"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    week: Mapped[str] = mapped_column(String(10))  # ISO week, e.g. 2026-W49
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class Risk(Base):
    """A 风险记录表 row: what may go wrong in a project, how likely, how bad, the response and its owner."""

    __tablename__ = "risks"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id"))
    description: Mapped[str] = mapped_column(Text)
    likelihood: Mapped[str] = mapped_column(String(10))  # high | mid | low
    impact: Mapped[str] = mapped_column(String(10))  # high | mid | low
    response: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(10), default="open")  # open | closed
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)

    owner: Mapped[User] = relationship(foreign_keys=[owner_id])
    project: Mapped[Project] = relationship()
    chat: Mapped[Chat | None] = relationship()


class Meeting(Base):
    """会议纪要: a meeting's topic, time, departments, summary and decisions; its action items are tasks."""

    __tablename__ = "meetings"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id"))
    topic: Mapped[str] = mapped_column(String(200))
    held_at: Mapped[datetime | None]
    departments: Mapped[str] = mapped_column(Text, default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    decisions: Mapped[str] = mapped_column(Text, default="")
    attendees: Mapped[str] = mapped_column(Text, default="")  # 参会: the names as the minutes give them
    recorder_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]

    recorder: Mapped[User] = relationship()
    actions: Mapped[list[Task]] = relationship(secondary="meeting_actions", order_by="Task.id")


class MeetingAction(Base):
    """An action item of a meeting: the task it became (the link back to the meeting)."""

    __tablename__ = "meeting_actions"
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)


class Milestone(Base):
    """A 关键里程碑 of a project, or of one of its tasks (whose lateness puts it at risk)."""

    __tablename__ = "milestones"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    title: Mapped[str] = mapped_column(String(200))
    due: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10), default="open")  # open | done
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]
    done_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", name="fk_milestones_done_by"))


class AuditEntry(Base):
    __tablename__ = "audit_log"
    # an entity's trail (操作记录 #N) and a person's week are read by these
    __table_args__ = (Index("ix_audit_entity", "entity_type", "entity_id"), Index("ix_audit_actor_at", "actor_id", "at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(40))
    entity_type: Mapped[str] = mapped_column(String(20), default="")
    entity_id: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(10), default="ok")  # ok | refused
    reason: Mapped[str] = mapped_column(Text, default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class InboundReceipt(Base):
    """First sight of a platform event: a retry finds this row and gets the same reply."""

    __tablename__ = "inbound_receipts"
    __table_args__ = (UniqueConstraint("platform", "event_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(200))
    seen_at: Mapped[datetime] = mapped_column(index=True)
    reply: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class InboundQueueItem(Base):
    """A verified inbound event (or an adapter's follow-up job) made durable BEFORE its callback is answered.

    A platform does not retry a callback we answered, so an answered event must survive a crash: the
    row is written first, the engine works from it, and the row is deleted once the engine's own
    transaction (with its receipt) has committed. A row whose lease ran out (its process died) is
    taken up again by any instance; the receipt makes the second run harmless.
    """

    __tablename__ = "inbound_queue"
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(40))  # "event", or an adapter's follow-up job name
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime]
    claimed_until: Mapped[datetime | None] = mapped_column(index=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class OutboxMessage(Base):
    """A message to post, written in the transaction that caused it; the delivery worker sends it."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    platform: Mapped[str] = mapped_column(String(20))
    target_kind: Mapped[str] = mapped_column(String(10))  # chat | user
    target_id: Mapped[str] = mapped_column(String(128))  # the platform's chat or user id
    target_name: Mapped[str] = mapped_column(String(200), default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    card_key: Mapped[str | None] = mapped_column(String(60), index=True)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending | sent | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime]
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")
    platform_message_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    claim_token: Mapped[str | None] = mapped_column(String(32))  # who holds the lease (see outbox.claim)

    __table_args__ = (
        Index(  # the claim's order: (not_before, id), so a claim reads its batch off the index, unsorted
            "ix_outbox_pending",
            "not_before",
            "id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(  # retention: sent rows are pruned by age
            "ix_outbox_sent",
            "sent_at",
            postgresql_where=text("status = 'sent'"),
            sqlite_where=text("status = 'sent'"),
        ),
    )


class InstallationSetting(Base):
    """Facts about this installation, one row each (its random id: storage/installation.py)."""

    __tablename__ = "installation"
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


class RateSlot(Base):
    """The send log of one rate-limit key (scheduler/limits.py), shared by every instance: `sends` holds its
    recent send times (little-endian int64 microseconds), `next_at` the latest of them."""

    __tablename__ = "rate_slots"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    next_at: Mapped[datetime]
    sends: Mapped[bytes | None] = mapped_column(LargeBinary)


class CardUpdateCode(Base):
    """A platform's one-time code for changing a sent card in place, or for answering a chat later
    (storage/card_codes.py): only the latest per copy, with its expiry. Kept in the database so that a restart, or another instance, still updates the card
    rather than posting it again."""

    __tablename__ = "card_update_codes"
    platform: Mapped[str] = mapped_column(String(20), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(200), primary_key=True)  # the copy, as the engine knows it
    card_id: Mapped[str] = mapped_column(String(128))  # the platform's id of the card showing the copy now
    code: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used: Mapped[bool] = mapped_column(Boolean, default=False)


class JobRun(Base):
    """One row per firing of a calendar job (daily prompt, weekly summary): it fires once, anywhere."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job", "slot"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(String(40))
    slot: Mapped[str] = mapped_column(String(40))
    ran_at: Mapped[datetime]


class ApprovalRequest(Base):
    """One filled-in approval form (审批 #A12) and where its flow stands.

    `stage_index` is the current stage of the current `round` (a resubmission after "return to
    initiator" starts a new round from the first stage). Every change bumps `version`. The engine
    locks this row (`FOR UPDATE` on PostgreSQL) before any vote, so concurrent votes serialise on it.
    """

    __tablename__ = "approval_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    template: Mapped[str] = mapped_column(String(100))
    initiator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))  # the initiator's, when filed
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id"))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"), index=True)  # 延期申请: the task
    values: Mapped[dict[str, Any]] = mapped_column(default=dict)  # field name -> stored value
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    round: Mapped[int] = mapped_column(Integer, default=1)
    stage_index: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    result_task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))  # 一键转任务
    # a platform's own approval mirrored here ("feishu:<instance code>"); its platform decides, not our stages
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]

    initiator: Mapped[User] = relationship(foreign_keys=[initiator_id])
    department: Mapped[Department | None] = relationship()
    chat: Mapped[Chat | None] = relationship()
    project: Mapped[Project | None] = relationship()
    task: Mapped[Task | None] = relationship(foreign_keys=[task_id])


class ApprovalStep(Base):
    """One stage of one round of a request: waiting, pending (current), approved, rejected, skipped or void."""

    __tablename__ = "approval_steps"
    __table_args__ = (UniqueConstraint("request_id", "round", "stage_index"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("approval_requests.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(Integer)
    stage_index: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(50))
    kind: Mapped[str] = mapped_column(String(20))
    mode: Mapped[str] = mapped_column(String(5))  # all | any
    status: Mapped[str] = mapped_column(String(10), default="waiting")
    note: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    approvers: Mapped[list[ApprovalApprover]] = relationship(order_by="ApprovalApprover.id")


class ApprovalApprover(Base):
    """Who may decide a step. A 转交 deactivates the row and adds one for the new person."""

    __tablename__ = "approval_approvers"
    __table_args__ = (UniqueConstraint("step_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("approval_steps.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))  # 会签: the department signed for
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    delegated_from_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    user: Mapped[User] = relationship(foreign_keys=[user_id])
    department: Mapped[Department | None] = relationship()


class ApprovalVote(Base):
    """A decision on a step. The unique (step, voter) makes a second vote by the same person impossible,
    whatever path it comes by (a retried callback, a tap and a command at once, two instances)."""

    __tablename__ = "approval_votes"
    __table_args__ = (UniqueConstraint("step_id", "voter_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("approval_requests.id", ondelete="CASCADE"), index=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("approval_steps.id", ondelete="CASCADE"))
    voter_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(10))  # approve | reject
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]
    voter: Mapped[User] = relationship()


# --- records, part A (migration 0009): collection requests, sign-off scope, milestones done ------------


class CollectionRequest(Base):
    """A 常规信息同步 request (收集 #C1): what is collected, from whom (its targets), by when.

    `status`: open (waiting for submissions), complete (the last one arrived; the requester got the set)
    or closed (the requester stopped it early)."""

    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), index=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id"))
    title: Mapped[str] = mapped_column(String(200))
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    deadline: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(10), default="open")  # open | complete | closed
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)

    requester: Mapped[User] = relationship()
    project: Mapped[Project | None] = relationship()
    chat: Mapped[Chat | None] = relationship()
    targets: Mapped[list[CollectionTarget]] = relationship(order_by="CollectionTarget.id")


class CollectionTarget(Base):
    """One person asked to submit (a department's head, or someone named), and what they submitted."""

    __tablename__ = "collection_targets"
    __table_args__ = (UniqueConstraint("collection_id", "user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))  # the department asked, if any
    submitted_at: Mapped[datetime | None]
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    content: Mapped[str] = mapped_column(Text, default="")
    links: Mapped[list[Any]] = mapped_column(default=list)

    user: Mapped[User] = relationship(foreign_keys=[user_id])
    department: Mapped[Department | None] = relationship()


# --- records, part B (migration 0011): 结项, the retrospective and the archive (协作案例库) ---------------


class ProjectArchive(Base):
    """A closed project (结项): who closed it and when, its figures then, and its retrospective (复盘:
    做得好的, 不足, 改进), which the coordinator owes until all three are given."""

    __tablename__ = "project_archives"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), unique=True)
    closed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    closed_at: Mapped[datetime]
    figures: Mapped[dict[str, Any]] = mapped_column(default=dict)
    went_well: Mapped[str] = mapped_column(Text, default="")
    fell_short: Mapped[str] = mapped_column(Text, default="")
    improve: Mapped[str] = mapped_column(Text, default="")
    retro_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    retro_at: Mapped[datetime | None]

    project: Mapped[Project] = relationship()


class ArchiveRecord(Base):
    """One searchable record of a closed project's archive: the project itself, a task, an approval, a risk,
    a meeting, a collection or the retrospective, as it stood when archived.

    `tokens` is the record's text cut into words at write time (space-joined), which the database's own
    full-text index reads: an FTS5 table kept by triggers on SQLite, a generated column
    `archive_fts_tsv = to_tsvector('simple', tokens)` with a GIN index on PostgreSQL. Both live in migration
    0011 only (see there)."""

    __tablename__ = "archive_records"
    __table_args__ = (UniqueConstraint("kind", "entity_id"), Index("ix_archive_records_kind_at", "kind", "happened_at"))
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # project | task | approval | risk | meeting | collection | retro
    entity_id: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    happened_at: Mapped[datetime] = mapped_column(index=True)  # when the record was made: the 时间 filter
    archived_at: Mapped[datetime]
    tokens: Mapped[str] = mapped_column(Text, default="")


class ArchiveDepartment(Base):
    """A department an archived record involves (the 部门 filter)."""

    __tablename__ = "archive_departments"
    record_id: Mapped[int] = mapped_column(ForeignKey("archive_records.id", ondelete="CASCADE"), primary_key=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), primary_key=True, index=True)
