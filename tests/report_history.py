"""A fixed-seed three-month history for the report tests: 6 departments, 300 tasks, their progress,
approvals (with 延期申请 that moved deadlines) and help requests, written as rows AND kept as plain
records, so the tests can compute every figure again in plain Python without reading the database."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from collabbot.storage.db import Database
from collabbot.storage.models import (
    ApprovalApprover,
    ApprovalRequest,
    ApprovalStep,
    ApprovalVote,
    Department,
    HelpRequest,
    ProgressReport,
    Project,
    ProjectDepartment,
    Task,
    User,
    Wait,
)

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 9, 1, 9, 0, tzinfo=TZ)
NOW = datetime(2026, 12, 4, 16, 0, tzinfo=TZ)  # a Friday afternoon
DEPARTMENTS = ("技术部", "市场部", "设计部", "运营部", "财务部", "法务部")
STAGES = ("初审", "会签", "终审")


@dataclass
class TaskRec:
    id: int
    dept: int
    owner: int
    project: int
    created: datetime
    deadline: datetime | None
    acked: datetime | None
    done: datetime | None
    status: str
    original: datetime | None = None  # the deadline set first (an approved extension moves `deadline` only)
    submitted: datetime | None = None  # the last hand-in: a done task's reviewer accepted it later
    reports: list[datetime] = field(default_factory=list)


@dataclass
class WaitRec:
    kind: str
    person: int
    person_dept: int
    project: int | None
    raised: datetime
    answered: datetime | None
    escalated: datetime | None


@dataclass
class StepRec:
    request: int
    project: int
    dept: int
    initiator: int
    name: str
    index: int
    started: datetime
    decided: datetime | None
    status: str
    voter: int
    voter_name: str


@dataclass
class History:
    depts: dict[int, str] = field(default_factory=dict)
    heads: dict[int, int] = field(default_factory=dict)  # dept id -> head user id
    users: dict[int, tuple[str, int]] = field(default_factory=dict)  # id -> (name, dept id)
    supervisors: dict[int, int] = field(default_factory=dict)
    projects: dict[int, str] = field(default_factory=dict)
    tasks: list[TaskRec] = field(default_factory=list)
    waits: list[WaitRec] = field(default_factory=list)
    steps: list[StepRec] = field(default_factory=list)
    admin: int = 0
    outsider: int = 0


def _work_moment(rng: random.Random, day: datetime) -> datetime:
    """A moment on `day` mostly inside working hours, sometimes in the evening."""
    hour = rng.choice((9, 10, 11, 14, 15, 16, 17, 20))
    return day.replace(hour=hour, minute=rng.randrange(60), second=0)


def generate(db: Database, seed: int = 14, tasks: int = 300, days: int = 91) -> History:
    rng = random.Random(seed)
    h = History()
    with db.transaction() as s:
        for name in DEPARTMENTS:
            dept = Department(name=name)
            s.add(dept)
            s.flush()
            h.depts[dept.id] = name
            head = User(name=f"{name}负责人", department_id=dept.id, created_at=START)
            s.add(head)
            s.flush()
            dept.head_id = head.id
            h.heads[dept.id] = head.id
            h.users[head.id] = (head.name, dept.id)
            for i in range(4):
                u = User(name=f"{name}员工{i + 1}", department_id=dept.id, supervisor_id=head.id, created_at=START)
                s.add(u)
                s.flush()
                h.users[u.id] = (u.name, dept.id)
                h.supervisors[u.id] = head.id
        admin = User(name="管理员", created_at=START)
        outsider = User(name="路人", created_at=START)
        s.add_all([admin, outsider])
        s.flush()
        h.admin, h.outsider = admin.id, outsider.id
        dept_ids = list(h.depts)
        for i, name in enumerate(("双十二活动", "官网改版", "年度审计")):
            coordinator = h.heads[dept_ids[i]]
            p = Project(name=name, coordinator_id=coordinator, initiating_dept_id=dept_ids[i], created_at=START)
            s.add(p)
            s.flush()
            for d in dept_ids[i * 2:i * 2 + 3]:
                s.add(ProjectDepartment(project_id=p.id, department_id=d))
            h.projects[p.id] = name
        project_ids = list(h.projects)
        people = [u for u in h.users if u not in h.heads.values()]
        now = NOW.astimezone(UTC)
        for _ in range(tasks):
            owner = rng.choice(people)
            dept = h.users[owner][1]
            project = rng.choice(project_ids)
            created = _work_moment(rng, START + timedelta(days=rng.randrange(days))).astimezone(UTC)
            deadline = None if rng.random() < 0.08 else created + timedelta(days=rng.randrange(1, 20), hours=3)
            acked = None if rng.random() < 0.1 else created + timedelta(minutes=rng.choice((5, 40, 90, 200, 900, 3000)))
            if acked is not None and acked > now:
                acked = None
            done = None
            status = "todo" if acked is None else "in_progress"
            roll = rng.random()
            if acked is not None and roll < 0.65:
                done = acked + timedelta(days=rng.randrange(0, 22), hours=rng.randrange(0, 9))
                if done > now:
                    done = None
                else:
                    status = "done"
            elif roll < 0.7:
                status = "cancelled"
            elif acked is not None and roll < 0.8:
                status = "review"
            # a 延期申请 for some tasks with a deadline: an approved one moves the deadline, keeps the original
            asked = deadline is not None and rng.random() < 0.12
            approved = asked and rng.random() < 0.7
            original = deadline
            if approved:
                deadline = deadline + timedelta(days=rng.randrange(1, 8))  # type: ignore[operator]
            # handed in up to a day and a half before the reviewer accepted (no random draw: the history stays)
            submitted = None if done is None else max(acked, done - timedelta(hours=12 * (len(h.tasks) % 4)))  # type: ignore[type-var]
            task = Task(title=f"任务{len(h.tasks) + 1}", initiator_id=h.heads[dept], department_id=dept,
                        owner_id=owner, project_id=project, status=status, deadline=deadline, acknowledged_at=acked,
                        started_at=acked,  # put in progress when acknowledged: what the discipline counts from
                        done_at=done, submitted_at=submitted, created_at=created, updated_at=created, original_deadline=original,
                        extensions=1 if approved else 0)
            s.add(task)
            s.flush()
            rec = TaskRec(task.id, dept, owner, project, created, deadline, acked, done, status, original, submitted)
            h.tasks.append(rec)
            # progress reports on some days between acknowledgement and done (or now)
            if acked is not None:
                day = acked
                last = done or now
                while day < last:
                    if rng.random() < 0.45:
                        at = min(day + timedelta(hours=rng.randrange(0, 6)), last - timedelta(minutes=1))
                        if at >= acked:
                            s.add(ProgressReport(task_id=task.id, author_id=owner, status="in_progress", percent=50,
                                                 created_at=at))
                            rec.reports.append(at)
                    day += timedelta(days=1)
            # the assignment wait
            escalated = None
            if acked is None or acked - created > timedelta(hours=6):
                escalated = created + timedelta(hours=5)
                escalated = escalated if escalated <= now else None
            s.add(Wait(kind="assign", entity_type="task", entity_id=task.id, person_id=owner, raised_at=created,
                       answered_at=acked, escalated_at=escalated))
            h.waits.append(WaitRec("assign", owner, dept, project, created, acked, escalated))
            if asked:
                req = ApprovalRequest(template="延期申请", initiator_id=owner, department_id=dept, project_id=project,
                                      task_id=task.id, status="approved" if approved else "rejected",
                                      created_at=created, updated_at=created, decided_at=created)
                s.add(req)
            # help requests
            if rng.random() < 0.25:
                helper = rng.choice([u for u in people if u != owner])
                raised = _work_moment(rng, created.astimezone(TZ) + timedelta(days=1)).astimezone(UTC)
                if raised < now:
                    answered = raised + timedelta(minutes=rng.choice((10, 60, 130, 400, 2000)))
                    answered = None if answered > now or rng.random() < 0.1 else answered
                    hr = HelpRequest(task_id=task.id, requester_id=owner, helper_id=helper, text="帮忙",
                                     department_id=h.users[helper][1], status="answered" if answered else "open",
                                     created_at=raised, answered_at=answered)
                    s.add(hr)
                    s.flush()
                    s.add(Wait(kind="help", entity_type="help", entity_id=hr.id, person_id=helper, raised_at=raised,
                               answered_at=answered))
                    h.waits.append(WaitRec("help", helper, h.users[helper][1], project, raised, answered, None))
        # approvals with three stages
        for _ in range(90):
            initiator = rng.choice(people)
            dept = h.users[initiator][1]
            project = rng.choice(project_ids)
            created = _work_moment(rng, START + timedelta(days=rng.randrange(days))).astimezone(UTC)
            req = ApprovalRequest(template="市场活动预算审批", initiator_id=initiator, department_id=dept,
                                  project_id=project, status="pending", created_at=created, updated_at=created)
            s.add(req)
            s.flush()
            at = created
            for index, name in enumerate(STAGES):
                voter = h.heads[dept_ids[(dept_ids.index(dept) + index) % len(dept_ids)]]
                decided = at + timedelta(minutes=rng.choice((20, 75, 150, 600, 1500, 4000)))
                if decided > now:
                    decided = None
                status = "pending" if decided is None else ("rejected" if rng.random() < 0.1 else "approved")
                step = ApprovalStep(request_id=req.id, round=1, stage_index=index, name=name, kind="person",
                                    mode="any", status=status, started_at=at, decided_at=decided)
                s.add(step)
                s.flush()
                s.add(ApprovalApprover(step_id=step.id, user_id=voter, created_at=at))
                s.add(Wait(kind="approval", entity_type="approval", entity_id=req.id, person_id=voter,
                           raised_at=at, answered_at=decided))
                h.waits.append(WaitRec("approval", voter, h.users[voter][1], project, at, decided, None))
                h.steps.append(StepRec(req.id, project, dept, initiator, name, index, at, decided, status, voter,
                                       h.users[voter][0]))
                if decided is None:
                    break
                s.add(ApprovalVote(request_id=req.id, step_id=step.id, voter_id=voter,
                                   decision="approve" if status == "approved" else "reject", created_at=decided))
                if status == "rejected":
                    req.status = "rejected"
                    break
                at = decided
            else:
                req.status = "approved"
    return h
