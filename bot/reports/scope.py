"""What a report covers (one project, one department, one person, or everything) and who may see it.

The rule follows task visibility: a person's figures are for themself, their supervisor or department
head, and admins; a department's for its head and admins; a project's for its members (coordinator,
creator, and whoever owns, started or helps on one of its tasks), the heads of its departments, and
admins; everything only for admins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select, true
from sqlalchemy.orm import Session

from collabbot.storage.models import (
    ApprovalRequest,
    Chat,
    Department,
    HelpRequest,
    Project,
    ProjectDepartment,
    Task,
    TaskCollaborator,
    User,
    Wait,
)

KINDS = ("project", "department", "person", "all")


@dataclass(frozen=True)
class Scope:
    kind: str  # one of KINDS
    id: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS or (self.kind != "all") == (self.id is None):
            raise ValueError(f"bad scope {self.kind}:{self.id}")

    def tasks(self) -> ColumnElement[bool]:
        """The tasks the scope covers (a department: the tasks it is responsible for, `tasks.department_id`)."""
        if self.kind == "project":
            return Task.project_id == self.id
        if self.kind == "department":
            return Task.department_id == self.id
        if self.kind == "person":
            return Task.owner_id == self.id
        return true()

    def approvals(self) -> ColumnElement[bool]:
        """Approval requests: the project's, the department's (the initiator's when filed), the person's own."""
        if self.kind == "project":
            return ApprovalRequest.project_id == self.id
        if self.kind == "department":
            return ApprovalRequest.department_id == self.id
        if self.kind == "person":
            return ApprovalRequest.initiator_id == self.id
        return true()

    def waits(self) -> ColumnElement[bool]:
        """Waits (someone must answer): by who must answer, or for a project by what they answer about."""
        if self.kind == "person":
            return Wait.person_id == self.id
        if self.kind == "department":
            return Wait.person_id.in_(select(User.id).where(User.department_id == self.id))
        if self.kind == "all":
            return true()
        project_chats = select(Chat.id).where(Chat.project_id == self.id)
        return or_(
            and_(Wait.entity_type == "task", Wait.entity_id.in_(select(Task.id).where(Task.project_id == self.id))),
            and_(Wait.entity_type == "approval",
                 Wait.entity_id.in_(select(ApprovalRequest.id).where(ApprovalRequest.project_id == self.id))),
            and_(Wait.entity_type == "help", Wait.entity_id.in_(
                select(HelpRequest.id).where(or_(HelpRequest.task_id.in_(select(Task.id).where(
                    Task.project_id == self.id)), HelpRequest.chat_id.in_(project_chats))))),
        )


def heads_of(s: Session, user: User) -> set[int]:
    """The people above `user`: their supervisor and their department's head."""
    out = {user.supervisor_id} if user.supervisor_id else set()
    if user.department_id is not None:
        head = s.scalar(select(Department.head_id).where(Department.id == user.department_id))
        if head is not None:
            out.add(head)
    return out


def is_project_member(s: Session, viewer_id: int, project_id: int) -> bool:
    project = s.get(Project, project_id)
    if project is None:
        return False
    if viewer_id in (project.coordinator_id, project.created_by_id):
        return True
    in_task = exists().where(Task.project_id == project_id, or_(Task.owner_id == viewer_id,
                                                                 Task.initiator_id == viewer_id))
    collab = exists().where(TaskCollaborator.user_id == viewer_id, TaskCollaborator.task_id == Task.id,
                            Task.project_id == project_id)
    depts = select(ProjectDepartment.department_id).where(ProjectDepartment.project_id == project_id)
    heads = exists().where(Department.head_id == viewer_id, or_(Department.id.in_(depts),
                                                                Department.id == project.initiating_dept_id))
    return bool(s.scalar(select(or_(in_task, collab, heads))))


def may_see(s: Session, viewer: User, scope: Scope, is_admin: bool) -> bool:
    """The visibility rule above; admins see everything."""
    if is_admin:
        return True
    if scope.kind == "person":
        if scope.id == viewer.id:
            return True
        person = s.get(User, scope.id)
        return person is not None and viewer.id in heads_of(s, person)
    if scope.kind == "department":
        return s.scalar(select(Department.head_id).where(Department.id == scope.id)) == viewer.id
    if scope.kind == "project":
        assert scope.id is not None
        return is_project_member(s, viewer.id, scope.id)
    return False


def describe(scope: Scope) -> dict[str, Any]:
    return {"kind": scope.kind, "id": scope.id, "name": scope.name}
