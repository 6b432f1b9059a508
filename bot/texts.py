"""Every sentence the bot says, in Chinese (default) and English, in one place.

`t(lang, key, **values)` formats one. Keep replies short (people read them on phones) and make every
refusal say what to type instead.
"""

from __future__ import annotations

from typing import Any

STATUS = {
    "todo": ("待启动", "to do"),
    "in_progress": ("进行中", "in progress"),
    "review": ("待审核", "in review"),
    "done": ("已完成", "done"),
    "cancelled": ("已取消", "cancelled"),
    "overdue": ("已延期", "overdue"),
    "blocked": ("阻塞", "blocked"),
}
PRIORITY = {"high": ("高", "high"), "mid": ("中", "mid"), "low": ("低", "low")}

TEXTS: dict[str, tuple[str, str]] = {
    # parsing
    "empty": ("有什么可以帮你？发送「帮助」查看全部命令。", "How can I help? Send \"help\" for every command."),
    "too_long": ("消息太长（超过 {value} 字），请精简后重发。", "That message is too long (over {value} characters)."),
    "unknown_command": ("没有「{value}」这个命令。{suggestions}发送「帮助」查看全部命令。",
                        "There is no command \"{value}\". {suggestions}Send \"help\" for every command."),
    "did_you_mean": ("你是不是想用：{names}？", "Did you mean: {names}? "),
    "missing_field": ("缺少{field}。例如：{example}", "Missing {field}. For example: {example}"),
    "bad_field": ("{field}「{value}」看不懂。例如：{example}", "Cannot read {field} \"{value}\". For example: {example}"),
    "internal_error": ("处理时出错了，已记录，请稍后重试。", "Something went wrong; it has been logged. Please retry."),
    # generic refusals
    "not_found_task": ("找不到任务 #{id}。发送「我的任务」查看你的任务。", "There is no task #{id}. Send \"my tasks\"."),
    "not_found_help": ("找不到求助 #H{id}。发送「待我处理」查看。", "There is no help request #H{id}. Send \"todo\"."),
    "unknown_user": ("找不到成员 {name}。请用 @ 选择群成员。", "Unknown member {name}: @mention them."),
    "unknown_dept": ("找不到部门「{name}」。已有部门：{known}", "No department \"{name}\". Known: {known}"),
    "not_allowed": ("你不能{action}：{why}", "You cannot {action}: {why}"),
    "need_group": ("请在项目群里 @我 使用这个命令。", "Use this command in a project group, @mentioning me."),
    "no_project": ("本群还没有绑定项目。先发送：@bot 绑定项目 项目名 协同负责人 @某人",
                   "This group has no project yet. First: @bot project bind NAME coordinator @someone"),
    "stale_card": ("这张卡片已过期，任务已有更新。已为你显示最新状态。", "This card is out of date; here is the latest."),
    "bad_button": ("这个按钮已失效。", "This button is no longer valid."),
    # projects
    "project_bound": ("已绑定项目「{name}」。协同负责人：", "Group bound to project \"{name}\". Coordinator: "),
    "project_updated": ("项目「{name}」信息已更新。", "Project \"{name}\" updated."),
    "project_missing_name": ("项目名", "the project name"),
    "project_auto": ("本群已自动绑定项目「{name}」，协同负责人 {who}。可发送「绑定项目 …」补充目标、部门和周期。",
                     "This group is now project \"{name}\", coordinated by {who}. Send project bind … to add details."),
    "weekly_note_saved": ("已记录{dept}本周协作总结，将附在周五的周报里。",
                          "{dept}'s weekly note is saved for Friday's summary."),
    # tasks
    "task_created": ("已创建任务 #{id}「{title}」，负责人 ", "Created task #{id} \"{title}\", owner "),
    "task_assigned": ("你有一个新任务，请确认收到：", "You have a new task; please acknowledge: "),
    "subtask_created": ("已为 #{parent} 拆分子任务 #{id}「{title}」，负责人 ",
                        "Subtask #{id} \"{title}\" of #{parent} created, owner "),
    "dependency_added": ("已设置：#{task} 需等待 #{dep} 完成。", "Set: #{task} waits for #{dep}."),
    "dependency_removed": ("已取消：#{task} 不再等待 #{dep}。", "Removed: #{task} no longer waits for #{dep}."),
    "dependency_cycle": ("不能设置这个依赖，会形成循环：{cycle}", "That dependency would make a cycle: {cycle}"),
    "dependency_self": ("任务不能依赖自己。", "A task cannot depend on itself."),
    "dependency_missing": ("#{task} 并不依赖 #{dep}。", "#{task} does not depend on #{dep}."),
    "acknowledged": ("已确认收到任务 #{id}「{title}」。", "Task #{id} \"{title}\" acknowledged."),
    "already_acknowledged": ("任务 #{id} 已经确认过了。", "Task #{id} was already acknowledged."),
    "started": ("任务 #{id} 已开始。", "Task #{id} started."),
    "progress_saved": ("任务 #{id} 进度已更新：{percent}%", "Task #{id} progress: {percent}%"),
    "submitted": ("任务 #{id} 已提交，等待 {who} 验收。交付物：{deliverable}",
                  "Task #{id} submitted for review by {who}. Deliverable: {deliverable}"),
    "accepted": ("任务 #{id}「{title}」已验收通过。", "Task #{id} \"{title}\" accepted."),
    "returned": ("任务 #{id} 被退回，原因：{reason}", "Task #{id} was sent back: {reason}"),
    "reassigned": ("任务 #{id} 已转交给 ", "Task #{id} reassigned to "),
    "cancelled": ("任务 #{id} 已取消。", "Task #{id} cancelled."),
    "commented": ("已在任务 #{id} 下评论。", "Comment added to task #{id}."),
    "comment_notice": ("在任务 #{id}「{title}」下提到了你：{text}", "mentioned you on task #{id} \"{title}\": {text}"),
    "unblocked": ("任务 #{id}「{title}」的前置任务都已完成，可以开始了。",
                  "All tasks before #{id} \"{title}\" are done: you can start."),
    "bad_state": ("任务 #{id} 当前是「{status}」，不能{action}。", "Task #{id} is {status}; cannot {action}."),
    "blocked_by": ("任务 #{id} 还在等待前置任务完成：{deps}", "Task #{id} still waits for {deps}."),
    "open_subtasks": ("任务 #{id} 还有未完成的子任务：{subs}", "Task #{id} has open subtasks: {subs}"),
    "percent_range": ("完成比例要在 0 到 100 之间，例如：进度 #12 60%", "Percent must be 0–100, e.g. progress #12 60%"),
    "same_owner": ("{name} 已经是任务 #{id} 的负责人。", "{name} already owns task #{id}."),
    "unknown_template": ("没有「{name}」这个任务模板。已有模板：{known}", "No task template \"{name}\". Known: {known}"),
    "deadline_past": ("截止时间 {when} 已经过去了，请换一个时间。", "The deadline {when} is in the past."),
    "deadline_after_parent": ("子任务截止时间不能晚于主任务（{when}）。", "A subtask cannot be due after its parent ({when})."),
    "too_long_field": ("{field}太长了（最多 {max} 字）。", "{field} is too long (at most {max} characters)."),
    # help requests
    "help_sent": ("已向 {dept}负责人 发出求助 #H{id}。", "Help request #H{id} sent to the head of {dept}."),
    "help_notice": ("向你求助 #H{id}：{text}", "asks you for help #H{id}: {text}"),
    "help_answered": ("求助 #H{id} 已处理：{answer}", "Help request #H{id} answered: {answer}"),
    "help_closed": ("求助 #H{id} 已经处理过了。", "Help request #H{id} was already answered."),
    "no_head": ("{dept}还没有设置部门负责人，请联系管理员。", "{dept} has no head yet; ask an admin."),
    # queries
    "my_tasks_title": ("我的任务", "My tasks"),
    "my_tasks_empty": ("你现在没有进行中的任务。", "You have no open tasks."),
    "waiting_title": ("待我处理", "Waiting on me"),
    "waiting_empty": ("没有等你处理的事项。", "Nothing waits on you."),
    "waiting_ack": ("确认收到任务 #{id}「{title}」（{since} 起）", "Acknowledge task #{id} \"{title}\" (since {since})"),
    "waiting_review": ("验收任务 #{id}「{title}」", "Review task #{id} \"{title}\""),
    "waiting_help": ("答复求助 #H{id}：{text}（{since} 起）", "Answer help request #H{id}: {text} (since {since})"),
    "waiting_overdue": ("任务 #{id}「{title}」已延期，请更新进度或申请延期", "Task #{id} \"{title}\" is overdue"),
    "help_title": ("命令一览（群里请先 @我）", "Commands (in groups, @mention me first)"),
    # card labels
    "f_owner": ("负责人", "Owner"),
    "f_collaborators": ("协作", "Collaborators"),
    "f_deadline": ("截止", "Due"),
    "f_priority": ("优先级", "Priority"),
    "f_project": ("项目", "Project"),
    "f_initiator": ("发起人", "Initiator"),
    "f_dept": ("部门", "Department"),
    "f_progress": ("完成比例", "Progress"),
    "f_status": ("当前状态", "Status"),
    "f_next": ("下一步计划", "Next step"),
    "f_problems": ("存在问题", "Problems"),
    "f_updated": ("更新时间", "Updated"),
    "f_deliverable_expected": ("交付物要求", "Deliverable expected"),
    "f_deliverable": ("交付物", "Deliverable"),
    "f_attachments": ("附件", "Attachments"),
    "f_remarks": ("备注", "Remarks"),
    "f_subtasks": ("子任务", "Subtasks"),
    "f_depends": ("前置任务", "Depends on"),
    "f_goal": ("目标", "Goal"),
    "f_kpis": ("KPI", "KPIs"),
    "f_dates": ("周期", "Dates"),
    "f_coordinator": ("协同负责人", "Coordinator"),
    "f_departments": ("参与部门", "Departments"),
    "f_request": ("需要", "Needs"),
    "b_ack": ("确认收到", "Acknowledge"),
    "b_start": ("开始", "Start"),
    "b_progress": ("更新进度", "Update progress"),
    "b_finish": ("完成", "Finish"),
    "b_reassign": ("转交", "Reassign"),
    "b_accept": ("通过", "Accept"),
    "b_return": ("退回", "Send back"),
    "b_help_done": ("已处理", "Handled"),
    "hint_progress": ("请发送：进度 #{id} 60% 完成 … 下一步 … 问题 …", "Send: progress #{id} 60% done … next … problems …"),
    "hint_finish": ("请发送：完成 #{id} 交付物 链接或说明", "Send: done #{id} deliverable LINK-OR-TEXT"),
    "hint_reassign": ("请发送：转交 #{id} @新负责人 原因 …", "Send: reassign #{id} @new-owner reason …"),
    "hint_return": ("请发送：退回 #{id} 原因 …", "Send: return #{id} reason …"),
    "hint_help_done": ("请发送：答复 #H{id} 处理结果", "Send: answer #H{id} RESULT"),
    "task_card_title": ("任务 #{id} {title}", "Task #{id} {title}"),
    "help_card_title": ("求助 #H{id}", "Help request #H{id}"),
    "history_created": ("{when} {who} 创建", "{when} created by {who}"),
    "history_progress": ("{when} {who} 更新进度 {percent}%", "{when} {who}: {percent}%"),
    "history_comment": ("{when} {who}：{text}", "{when} {who}: {text}"),
    "none": ("无", "none"),
    "refused_action": ("操作", "do this"),
}

# field -> (zh name, en name, zh example, en example)
FIELD_HELP: dict[str, tuple[str, str, str, str]] = {
    "title": ("任务标题", "the task title", "新建任务 活动H5开发 负责人 @李四 截止 12-10",
              "task new Campaign-H5 owner @Li due 12-10"),
    "owner": ("负责人", "the owner", "新建任务 活动H5开发 负责人 @李四", "task new Campaign-H5 owner @Li"),
    "deadline": ("截止时间", "the deadline", "截止 12-10 18:00（也可以：明天、周五、下周一、12月10日）",
                 "due 12-10 18:00 (or: tomorrow, fri, next mon)"),
    "priority": ("优先级", "the priority", "优先级 高（高/中/低）", "priority high (high/mid/low)"),
    "task": ("任务编号", "the task number", "进度 #12 60%", "progress #12 60%"),
    "percent": ("完成比例", "the percent", "进度 #12 60% 完成 首页 下一步 联调", "progress #12 60% done home next api"),
    "deliverable": ("交付物", "the deliverable", "完成 #12 交付物 https://example.com/h5", "done #12 deliverable https://…"),
    "reason": ("原因", "the reason", "退回 #12 原因 缺少埋点", "return #12 reason tracking is missing"),
    "new_owner": ("新负责人", "the new owner", "转交 #12 @王五 原因 人手调整", "reassign #12 @Wang reason workload"),
    "dependency": ("两个任务编号", "two task numbers", "依赖 #13 #12（#13 等 #12 完成）", "depend #13 #12 (#13 waits for #12)"),
    "comment": ("评论内容", "the comment", "评论 #12 @王五 请看一下设计稿", "comment #12 @Wang please check"),
    "help_target": ("求助对象（部门或 @部门负责人）", "whom to ask (a department or @its head)",
                    "求助 技术部 需要两名前端支援 #12", "ask 技术部 need two front-end devs #12"),
    "help_text": ("求助内容", "what you need", "求助 技术部 需要两名前端支援", "ask 技术部 need two front-end devs"),
    "help_id": ("求助编号", "the help request number", "答复 #H3 已安排小王支援", "answer #H3 Wang will help"),
    "project_name": ("项目名", "the project name", "绑定项目 新品上市 协同负责人 @张三 参与部门 市场部,技术部",
                     "project bind Launch coordinator @Zhang departments Marketing,Tech"),
    "date": ("日期", "the date", "开始 12-01 结束 12-31", "start 12-01 end 12-31"),
    "weekly_note": ("总结内容", "the note", "本周总结 完成H5联调，下周上线", "weekly note H5 ready, launch next week"),
}


HISTORY_VERBS: dict[str, tuple[str, str]] = {
    "task.create": ("创建", "created"),
    "task.acknowledge": ("确认收到", "acknowledged"),
    "task.start": ("开始", "started"),
    "task.progress": ("更新进度", "reported"),
    "task.finish": ("提交验收", "submitted"),
    "task.accept": ("验收通过", "accepted"),
    "task.return": ("退回", "sent back"),
    "task.reassign": ("转交", "reassigned"),
    "task.cancel": ("取消", "cancelled"),
    "task.depend": ("设置依赖", "linked"),
    "task.undepend": ("取消依赖", "unlinked"),
}


def history_verb(lang: str, action: str) -> str:
    zh, en = HISTORY_VERBS.get(action, (action, action))
    return en if lang == "en" else zh


def t(lang: str, key: str, **values: Any) -> str:
    zh, en = TEXTS[key]
    text = en if lang == "en" else zh
    return text.format(**values) if values else text


def status_name(lang: str, status: str) -> str:
    zh, en = STATUS[status]
    return en if lang == "en" else zh


def priority_name(lang: str, priority: str) -> str:
    zh, en = PRIORITY.get(priority, (priority, priority))
    return en if lang == "en" else zh


def field_name(lang: str, field: str) -> str:
    entry = FIELD_HELP.get(field)
    if entry is None:
        return field
    return entry[1] if lang == "en" else entry[0]


def field_example(lang: str, field: str) -> str:
    entry = FIELD_HELP.get(field)
    if entry is None:
        return ""
    return entry[3] if lang == "en" else entry[2]

TEXTS.update({
    "a_create": ("在这里建任务", "create tasks here"),
    "a_subtask": ("拆分这个任务", "split this task"),
    "a_depend": ("设置这个任务的依赖", "set this task's dependencies"),
    "a_ack": ("确认这个任务", "acknowledge this task"),
    "a_start": ("开始这个任务", "start this task"),
    "a_progress": ("汇报这个任务的进度", "report progress on this task"),
    "a_finish": ("提交这个任务", "finish this task"),
    "a_accept": ("验收这个任务", "accept this task"),
    "a_return": ("退回这个任务", "send this task back"),
    "a_reassign": ("转交这个任务", "reassign this task"),
    "a_cancel": ("取消这个任务", "cancel this task"),
    "a_answer_help": ("答复这个求助", "answer this help request"),
    "a_edit_project": ("修改本群的项目", "change this group's project"),
    "a_weekly_note": ("发本周协作总结", "post a weekly note"),
    "w_owner_only": ("只有负责人 {name} 可以", "only the owner {name} may"),
    "w_reviewers": ("只有发起人 {initiator} 或协同负责人 {coordinator} 可以", "only {initiator} or {coordinator} may"),
    "w_managers": ("只有发起人、负责人、协同负责人或管理员可以", "only the initiator, owner, coordinator or an admin may"),
    "w_reassign": ("只有负责人、发起人、协同负责人、本部门负责人（限部门内）或管理员可以",
                   "only the owner, initiator, coordinator, the department head (within the department) or an admin may"),
    "w_helper": ("这条求助是发给 {name} 的", "this request was sent to {name}"),
    "w_coordinator": ("只有协同负责人 {name} 或管理员可以", "only the coordinator {name} or an admin may"),
    "w_dept_head": ("只有部门负责人可以", "only a department head may"),
    "not_member": ("{name} 不在组织里，请联系管理员。", "{name} is not in the org; ask an admin."),
    "task_line": ("#{id} {title}｜{owner}｜截止 {deadline}｜{percent}%", "#{id} {title} | {owner} | due {deadline} | {percent}%"),
    "group_heading": ("【{name}】", "[{name}]"),
    "welcome": ("大家好，我是协作机器人。先绑定项目：@我 绑定项目 项目名 协同负责人 @某人；发送「帮助」看全部命令。",
                "Hello! Bind this group first: @me project bind NAME coordinator @someone. Send \"help\" for commands."),
    "comment_posted": ("#{id} 评论：{text}", "#{id} comment: {text}"),
    "help_answered_notice": ("你的求助 #H{id} 已由 {name} 处理：{answer}", "Your help request #H{id} was answered by {name}: {answer}"),
    "review_request": ("任务 #{id}「{title}」已提交，请验收：", "Task #{id} \"{title}\" is ready for your review: "),
    "returned_notice": ("你的任务 #{id} 被退回，原因：{reason}", "Your task #{id} was sent back: {reason}"),
    "accepted_notice": ("你的任务 #{id}「{title}」已验收通过。", "Your task #{id} \"{title}\" was accepted."),
    "reassigned_from": ("（原负责人 {name}）", " (was {name})"),
    "project_line": ("项目「{name}」", "Project \"{name}\""),
    "template_applied": ("（模板「{name}」，含 {n} 个子任务）", " (template \"{name}\", {n} subtasks)"),
    "progress_hint_100": ("已到 100%，完成后请发送：完成 #{id} 交付物 …", "At 100%: send done #{id} deliverable … when ready"),
    "help_no_target": ("求助对象", "whom to ask"),
})

TEXTS.update({
    "nag_assign": ("请确认收到任务 #{id}「{title}」（{since} 分派，还没有回应）",
                   "please acknowledge task #{id} \"{title}\" (assigned {since}, no answer yet)"),
    "nag_overdue": ("任务 #{id}「{title}」已延期，请回复原因和补救措施：进度 #{id} … 或申请延期",
                    "task #{id} \"{title}\" is overdue: reply with a reason and a remedy (progress #{id} … or an extension)"),
    "what_overdue": ("任务 #{id}「{title}」延期未说明原因", "overdue task #{id} \"{title}\" has no reason yet"),
    "nag_help": ("求助 #H{id} 还在等你答复：{text}（{since} 起）", "help request #H{id} still waits for you: {text} (since {since})"),
    "nag_generic": ("有一项事务在等你处理（{since} 起）", "something waits for you (since {since})"),
    "escalation_title": ("升级提醒：{name} 未回应", "Escalation: {name} has not answered"),
    "escalation_private": ("{name} 的以下事项超过 {hours} 小时未回应，请跟进：", "{name} has not answered this for {hours} hours:"),
    "escalation_group": ("{what}，已超过 {hours} 小时未回应，已告知 {boss}。", "{what}: no answer for {hours} hours; {boss} was told."),
    "f_waiting": ("等待事项", "Waiting"),
    "f_since": ("发起时间", "Since"),
    "f_person": ("待回应人", "Who"),
    "f_nags": ("已提醒", "Reminded"),
    "b_remind": ("再次提醒", "Remind again"),
    "reminded": ("已再次提醒 {name}。", "{name} was reminded again."),
    "remind_again": ("{boss} 请你尽快处理：{what}", "{boss} asks you to handle: {what}"),
    "what_assign": ("任务 #{id}「{title}」待确认收到", "task #{id} \"{title}\" awaits acknowledgement"),
    "what_help": ("求助 #H{id} 待答复", "help request #H{id} awaits an answer"),
    "unanswered": ("未回应", "unanswered"),
    "overdue_owner": ("任务 #{id}「{title}」已过截止时间（{deadline}）。请回复原因和补救措施：发送「进度 #{id} …」更新进度，或「申请 延期申请」申请延期。",
                      "Task #{id} \"{title}\" passed its deadline ({deadline}). Reply with a reason and a remedy: send progress #{id} … or apply for an extension."),
    "overdue_coordinator": ("延期预警：任务 #{id}「{title}」（负责人 {owner}）已过截止时间 {deadline}。",
                            "Overdue: task #{id} \"{title}\" (owner {owner}) passed its deadline {deadline}."),
    "overdue_title": ("延期预警", "Overdue warning"),
    "prompt_group": ("今日进度提醒：以下任务今天还没有更新进度，请负责人回复「进度 #编号 百分比 …」",
                     "Daily check: these tasks have no progress today; owners, reply progress #N PERCENT …"),
    "prompt_private": ("今天请更新任务 #{id}「{title}」的进度（当前 {percent}%）。", "Please update task #{id} \"{title}\" today (now {percent}%)."),
    "prompt_title": ("今日进度提醒", "Daily progress check"),
    "summary_title": ("本周协作周报 · {project}", "Weekly summary · {project}"),
    "summary_done": ("本周完成", "Done this week"),
    "summary_in_progress": ("进行中", "In progress"),
    "summary_overdue": ("已延期", "Overdue"),
    "summary_blocked": ("阻塞", "Blocked"),
    "summary_next_week": ("下周到期", "Due next week"),
    "summary_on_time": ("按时完成率", "On-time rate"),
    "summary_notes": ("部门协作总结", "Department notes"),
    "summary_intro": ("本周周报如下：", "This week's summary:"),
})
