"""The rules of SPEC section 3, one specification per rule, without a database."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest
from ticket_spec import (
    ADMIN,
    AGENT,
    AGENT_2,
    AUDITOR,
    CUSTOMER,
    OTHER_CUSTOMER,
    POLICY,
    SYSTEM,
    T0,
    TICKET_ID,
    at,
    closed,
    given,
    message,
    raised,
    status,
    timed,
)

from domain.commands import (
    AssignTicket,
    ChangePriority,
    ChangeStatus,
    CloseTicket,
    Command,
    PostMessage,
    RaiseTicket,
    RateTicket,
    RecordSlaBreach,
    ReopenTicket,
)
from domain.errors import (
    Forbidden,
    InvalidInput,
    InvalidState,
    NotRequester,
    TicketAlreadyClosed,
    TicketNotFound,
)
from domain.events import (
    Actor,
    ExternalAttachment,
    MessagePosted,
    PriorityChanged,
    SlaBreached,
    StatusChanged,
    TicketAssigned,
    TicketClosed,
    TicketRaised,
    TicketRated,
    TicketReopened,
)
from domain.ticket import fold

NOW = at(10)


def raise_cmd(actor: Actor = CUSTOMER, **kw: object) -> RaiseTicket:
    args: dict[str, object] = {
        "ticket_id": TICKET_ID,
        "subject": "Printer on fire",
        "description": "Smoke everywhere",
        "category_id": 1,
        "sla_policy": POLICY,
    }
    args.update(kw)
    return RaiseTicket(actor=actor, now=NOW, **args)  # type: ignore[arg-type]


def post(actor: Actor = AGENT, body: str = "hello", **kw: object) -> PostMessage:
    return PostMessage(actor=actor, now=NOW, message_id=7, body=body, **kw)  # type: ignore[arg-type]


# --- raise ----------------------------------------------------------------------------


def test_a_customer_raises_a_ticket_as_themselves_with_medium_priority_by_default() -> None:
    given().when(raise_cmd()).then(raised())


def test_a_raise_keeps_the_priority_asked_for_and_its_sla_targets() -> None:
    given().when(raise_cmd(priority="urgent")).then(raised(priority="urgent"))


def test_a_subject_of_200_characters_is_accepted() -> None:
    (event,) = (
        given()
        .when(raise_cmd(subject="s" * 200))
        .then(msgspec.structs.replace(raised(), subject="s" * 200))
    )
    assert isinstance(event, TicketRaised)


@pytest.mark.parametrize("subject", ["", "   ", "s" * 201], ids=["empty", "blank", "201-chars"])
def test_a_subject_must_be_1_to_200_characters(subject: str) -> None:
    err = given().when(raise_cmd(subject=subject)).raises(InvalidInput)
    assert err.field == "subject"


def test_a_description_of_20000_characters_is_accepted() -> None:
    given().when(raise_cmd(description="d" * 20_000)).then(
        msgspec.structs.replace(raised(), description="d" * 20_000)
    )


@pytest.mark.parametrize("description", ["", "\n\t ", "d" * 20_001])
def test_a_description_must_be_1_to_20000_characters(description: str) -> None:
    err = given().when(raise_cmd(description=description)).raises(InvalidInput)
    assert err.field == "description"
    assert err.kind == "invalid"


@pytest.mark.parametrize("bad", ["\x00", "\x07", "\x1b[31m", "\x7f", "\x85", "\x9f"])
def test_control_characters_are_rejected(bad: str) -> None:
    given().when(raise_cmd(subject=f"Printer {bad}")).raises(InvalidInput, "control characters")
    given().when(raise_cmd(description=f"x{bad}y")).raises(InvalidInput, "control characters")


def test_newlines_and_tabs_are_allowed_in_a_description_and_crlf_becomes_newline() -> None:
    given().when(raise_cmd(description="line one\r\n\tline two")).then(
        msgspec.structs.replace(raised(), description="line one\n\tline two")
    )


def test_a_subject_must_be_a_single_line() -> None:
    given().when(raise_cmd(subject="one\ntwo")).raises(InvalidInput)


def test_a_customer_may_not_raise_a_ticket_for_someone_else() -> None:
    given().when(raise_cmd(requester=OTHER_CUSTOMER)).raises(Forbidden)


def test_a_customer_naming_themselves_with_another_role_still_raises_as_a_customer() -> None:
    sneaky = Actor(id=CUSTOMER.id, role="admin", name="Boss")
    given().when(raise_cmd(requester=sneaky)).then(raised())


def test_an_agent_may_raise_a_ticket_on_a_customers_behalf() -> None:
    given().when(raise_cmd(AGENT, requester=CUSTOMER)).then(raised())


@pytest.mark.parametrize("actor", [AUDITOR, SYSTEM], ids=["auditor", "system"])
def test_auditors_and_the_system_may_not_raise_tickets(actor: Actor) -> None:
    given().when(raise_cmd(actor)).raises(Forbidden)


def test_closing_at_once_appends_ticket_closed_with_the_resolution() -> None:
    given().when(
        raise_cmd(
            close_immediately=True,
            resolution="done",
            resolution_type="Resolved",
            resolution_subject="Paper jam",
        )
    ).then(
        raised(),
        TicketClosed(
            resolution="done",
            resolution_type="Resolved",
            resolution_subject="Paper jam",
            previous="open",
        ),
    )


@pytest.mark.parametrize(
    ("rtype", "rsubj", "field"),
    [
        (None, "Paper jam", "resolutionType"),
        ("Resolved", None, "resolutionSubject"),
        ("Resolved", "  ", "resolutionSubject"),
    ],
)
def test_closing_at_once_requires_resolution_type_and_subject(
    rtype: str | None, rsubj: str | None, field: str
) -> None:
    err = (
        given()
        .when(raise_cmd(close_immediately=True, resolution_type=rtype, resolution_subject=rsubj))
        .raises(InvalidInput)
    )
    assert err.field == field


def test_raising_a_ticket_that_exists_is_a_conflict() -> None:
    given(raised()).when(raise_cmd()).raises(InvalidState)


def test_a_command_on_a_ticket_that_does_not_exist_is_not_found() -> None:
    given().when(post()).raises(TicketNotFound)


# --- message --------------------------------------------------------------------------


def test_a_requester_posts_a_public_message() -> None:
    given(raised()).when(post(CUSTOMER, "any news?")).then(
        MessagePosted(message_id=7, author=CUSTOMER, body="any news?")
    )


@pytest.mark.parametrize("actor", [AGENT, ADMIN], ids=["agent", "admin"])
def test_staff_may_post_internal_notes(actor: Actor) -> None:
    given(raised()).when(post(actor, "psst", visibility="internal")).then(
        MessagePosted(message_id=7, author=actor, body="psst", visibility="internal")
    )


def test_a_customer_may_not_post_an_internal_note() -> None:
    given(raised()).when(post(CUSTOMER, visibility="internal")).raises(Forbidden)


def test_a_message_on_a_closed_ticket_is_a_conflict() -> None:
    err = given(raised(), closed()).when(post(AGENT)).raises(TicketAlreadyClosed)
    assert err.kind == "conflict"


def test_a_requesters_message_on_a_resolved_ticket_reopens_it_first() -> None:
    given(raised(), status("resolved", "open")).when(post(CUSTOMER, "still broken")).then(
        TicketReopened(reason="the requester replied", previous="resolved"),
        MessagePosted(message_id=7, author=CUSTOMER, body="still broken"),
    )


def test_an_agents_message_on_a_resolved_ticket_does_not_reopen_it() -> None:
    given(raised(), status("resolved", "open")).when(post(AGENT, "glad to help")).then(
        MessagePosted(message_id=7, author=AGENT, body="glad to help")
    )


def test_html_is_sanitised_scripts_and_handlers_removed_allowed_tags_kept() -> None:
    (event,) = (
        given(raised())
        .when(
            post(
                AGENT,
                '<p onclick="x()">Hi <b>there</b><script>alert(1)</script>'
                '<a href="javascript:evil()">x</a></p>',
                body_type="html",
            )
        )
        .then(
            MessagePosted(
                message_id=7,
                author=AGENT,
                body='<p>Hi <b>there</b><a rel="noopener noreferrer nofollow">x</a></p>',
                body_type="html",
            )
        )
    )
    assert isinstance(event, MessagePosted)
    assert "script" not in event.body and "alert" not in event.body


def test_html_with_nothing_left_after_sanitising_is_rejected() -> None:
    given(raised()).when(post(AGENT, "<script>alert(1)</script>", body_type="html")).raises(
        InvalidInput
    )


def test_plain_text_is_stored_as_written() -> None:
    given(raised()).when(post(AGENT, "<b>not html</b>")).then(
        MessagePosted(message_id=7, author=AGENT, body="<b>not html</b>")
    )


@pytest.mark.parametrize("body", ["", "  ", "m" * 20_001, "bell\x07"])
def test_a_message_body_must_be_1_to_20000_clean_characters(body: str) -> None:
    err = given(raised()).when(post(AGENT, body)).raises(InvalidInput)
    assert err.field == "body"


def test_a_file_reference_is_kept_as_given() -> None:
    ref = ExternalAttachment(file_name="scan.pdf", file_path="/uploads/scan.pdf")
    given(raised()).when(post(AGENT, "see file", external_attachments=[ref])).then(
        MessagePosted(message_id=7, author=AGENT, body="see file", external_attachments=[ref])
    )


@pytest.mark.parametrize(
    ("name", "path", "field"),
    [
        ("", "/uploads/a.pdf", "fileName"),
        ("a\x00.pdf", "/uploads/a.pdf", "fileName"),
        ("a\nb.pdf", "/uploads/a.pdf", "fileName"),
        ("a" * 256, "/uploads/a.pdf", "fileName"),
        ("a.pdf", "", "filePath"),
        ("a.pdf", "/u\x1b[31m", "filePath"),
        ("a.pdf", "/" + "p" * 2_000, "filePath"),
    ],
)
def test_a_file_reference_obeys_the_text_rules(name: str, path: str, field: str) -> None:
    ref = ExternalAttachment(file_name=name, file_path=path)
    err = given(raised()).when(post(AGENT, "x", external_attachments=[ref])).raises(InvalidInput)
    assert err.field == field


def test_a_request_carries_at_most_20_attachments() -> None:
    refs = [ExternalAttachment(file_name=f"{i}.pdf", file_path=f"/u/{i}.pdf") for i in range(21)]
    err = given(raised()).when(post(AGENT, "x", external_attachments=refs)).raises(InvalidInput)
    assert err.field == "attachments"
    given(raised()).when(post(AGENT, "x", attachments=[f"f{i}" for i in range(21)])).raises(
        InvalidInput
    )
    err = given().when(raise_cmd(attachments=[f"f{i}" for i in range(21)])).raises(InvalidInput)
    assert err.field == "attachments"


@pytest.mark.parametrize(
    "body",
    [
        "a&#x7;b",
        "a&#27;[31m",
        "&#x1;",
        "<p></p>",
        "<br>",
        "&nbsp;",
        "<b> </b>",
        '<img src="javascript:alert(1)">',  # stored as a bare <img>: shows nothing
        "<img>",
    ],
)
def test_html_must_keep_visible_clean_content_once_sanitised(body: str) -> None:
    err = given(raised()).when(post(AGENT, body, body_type="html")).raises(InvalidInput)
    assert err.field == "body"


def test_html_character_references_for_newlines_and_images_alone_are_kept() -> None:
    given(raised()).when(post(AGENT, "a&#13;b", body_type="html")).then(
        MessagePosted(message_id=7, author=AGENT, body="a\nb", body_type="html")
    )
    img = '<img src="https://example.com/a.png">'
    given(raised()).when(post(AGENT, img, body_type="html")).then(
        MessagePosted(message_id=7, author=AGENT, body=img, body_type="html")
    )


def test_a_reply_as_requester_is_authored_by_the_requester() -> None:
    given(raised()).when(post(AGENT, "from email", as_requester=True)).then(
        MessagePosted(message_id=7, author=CUSTOMER, body="from email")
    )


def test_a_reply_as_requester_cannot_be_internal() -> None:
    given(raised()).when(post(AGENT, "x", as_requester=True, visibility="internal")).raises(
        InvalidInput
    )


# --- assign ---------------------------------------------------------------------------


def assign(actor: Actor, assignee: str) -> AssignTicket:
    return AssignTicket(actor=actor, now=NOW, assignee=assignee)


@pytest.mark.parametrize("actor", [AGENT, ADMIN], ids=["agent", "admin"])
def test_staff_assign_a_ticket(actor: Actor) -> None:
    given(raised()).when(assign(actor, "agent-2")).then(TicketAssigned(assignee="agent-2"))


def test_reassigning_records_the_previous_assignee() -> None:
    given(raised(), TicketAssigned(assignee="agent-1")).when(assign(AGENT, "agent-2")).then(
        TicketAssigned(assignee="agent-2", previous="agent-1")
    )


def test_a_customer_may_not_assign_even_their_own_ticket() -> None:
    given(raised()).when(assign(CUSTOMER, "agent-2")).raises(Forbidden)


def test_assigning_a_closed_ticket_is_a_conflict() -> None:
    given(raised(), closed()).when(assign(AGENT, "agent-2")).raises(TicketAlreadyClosed)


def test_assigning_the_same_assignee_again_appends_nothing() -> None:
    given(raised(), TicketAssigned(assignee="agent-2")).when(assign(AGENT, "agent-2")).then()


@pytest.mark.parametrize("assignee", ["", "   ", "a\x00b"])
def test_an_assignee_must_be_a_non_empty_clean_id(assignee: str) -> None:
    given(raised()).when(assign(AGENT, assignee)).raises(InvalidInput)


# --- change status --------------------------------------------------------------------


def change(actor: Actor, new: str, reason: str | None = None) -> ChangeStatus:
    return ChangeStatus(actor=actor, now=NOW, status=new, reason=reason)  # type: ignore[arg-type]


def test_staff_change_a_tickets_status() -> None:
    given(raised()).when(change(AGENT, "in_progress", "looking")).then(
        StatusChanged(status="in_progress", previous="open", reason="looking")
    )


def test_a_customer_may_not_change_status() -> None:
    given(raised()).when(change(CUSTOMER, "resolved")).raises(Forbidden)


def test_changing_status_to_closed_is_the_same_as_closing() -> None:
    given(raised(), status("in_progress", "open")).when(change(AGENT, "closed", "fixed")).then(
        TicketClosed(resolution="fixed", previous="in_progress")
    )


def test_the_requester_may_change_status_to_closed_as_they_may_close() -> None:
    given(raised()).when(change(CUSTOMER, "closed", "sorted")).then(
        TicketClosed(resolution="sorted", previous="open")
    )


def test_another_customer_may_not_close_by_changing_status() -> None:
    given(raised()).when(change(OTHER_CUSTOMER, "closed")).raises(NotRequester)


@pytest.mark.parametrize("new", ["open", "in_progress", "on_hold", "resolved"])
def test_a_closed_ticket_leaves_closed_only_through_reopen(new: str) -> None:
    given(raised(), closed()).when(change(AGENT, new)).raises(TicketAlreadyClosed)


def test_changing_status_to_closed_on_a_closed_ticket_is_a_conflict() -> None:
    given(raised(), closed()).when(change(AGENT, "closed")).raises(TicketAlreadyClosed)


def test_changing_to_the_current_status_appends_nothing() -> None:
    given(raised(), status("on_hold", "open")).when(change(AGENT, "on_hold")).then()


def test_an_unknown_status_is_invalid_input() -> None:
    given(raised()).when(change(AGENT, "done")).raises(InvalidInput)


def test_a_resolved_ticket_can_be_put_back_in_progress_by_staff() -> None:
    given(raised(), status("resolved", "open")).when(change(AGENT, "in_progress")).then(
        StatusChanged(status="in_progress", previous="resolved")
    )


# --- priority -------------------------------------------------------------------------


def test_staff_change_priority_with_the_new_targets() -> None:
    given(raised()).when(
        ChangePriority(actor=AGENT, now=NOW, priority="urgent", sla_policy=POLICY)
    ).then(PriorityChanged(priority="urgent", previous="medium", sla=POLICY["urgent"]))


def test_a_customer_may_not_change_priority() -> None:
    given(raised()).when(
        ChangePriority(actor=CUSTOMER, now=NOW, priority="urgent", sla_policy=POLICY)
    ).raises(Forbidden)


# --- close ----------------------------------------------------------------------------


def close(actor: Actor, **kw: str) -> CloseTicket:
    return CloseTicket(actor=actor, now=NOW, **kw)


@pytest.mark.parametrize("actor", [CUSTOMER, AGENT, ADMIN], ids=["requester", "agent", "admin"])
def test_the_requester_or_staff_close_a_ticket(actor: Actor) -> None:
    given(raised(), status("in_progress", "open")).when(close(actor, resolution="ok")).then(
        TicketClosed(resolution="ok", previous="in_progress")
    )


def test_closing_keeps_helpdesk_resolution_type_and_subject() -> None:
    given(raised()).when(close(AGENT, resolution_type="Fixed", resolution_subject="Toner")).then(
        TicketClosed(resolution_type="Fixed", resolution_subject="Toner", previous="open")
    )


def test_closing_a_closed_ticket_is_a_conflict() -> None:
    err = given(raised(), closed()).when(close(CUSTOMER)).raises(TicketAlreadyClosed)
    assert err.kind == "conflict"


# --- reopen ---------------------------------------------------------------------------


def reopen(actor: Actor, reason: str = "not fixed") -> ReopenTicket:
    return ReopenTicket(actor=actor, now=NOW, reason=reason)


@pytest.mark.parametrize("previous", ["resolved", "closed"])
@pytest.mark.parametrize("actor", [CUSTOMER, AGENT], ids=["requester", "agent"])
def test_the_requester_or_staff_reopen_a_resolved_or_closed_ticket(
    previous: str, actor: Actor
) -> None:
    history = [raised(), status("resolved", "open") if previous == "resolved" else closed()]
    given(*history).when(reopen(actor)).then(
        TicketReopened(reason="not fixed", previous=previous)  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("current", ["open", "in_progress", "on_hold"])
def test_only_resolved_or_closed_tickets_can_be_reopened(current: str) -> None:
    history = [raised()] + ([] if current == "open" else [status(current, "open")])
    given(*history).when(reopen(AGENT)).raises(InvalidState)


@pytest.mark.parametrize("reason", ["", "   "])
def test_reopening_requires_a_reason(reason: str) -> None:
    err = given(raised(), closed()).when(reopen(CUSTOMER, reason)).raises(InvalidInput)
    assert err.field == "reason"


# --- rate -----------------------------------------------------------------------------


def rate(actor: Actor, rating: object, comment: str | None = None) -> RateTicket:
    return RateTicket(actor=actor, now=NOW, rating=rating, comment=comment)  # type: ignore[arg-type]


@pytest.mark.parametrize("rating", [1, 5])
def test_the_requester_rates_a_closed_ticket(rating: int) -> None:
    given(raised(), closed()).when(rate(CUSTOMER, rating, "thanks")).then(
        TicketRated(rating=rating, comment="thanks")
    )


def test_the_requester_rates_a_resolved_ticket() -> None:
    given(raised(), status("resolved", "open")).when(rate(CUSTOMER, 4)).then(TicketRated(rating=4))


@pytest.mark.parametrize("actor", [AGENT, ADMIN], ids=["agent", "admin"])
def test_only_the_requester_may_rate(actor: Actor) -> None:
    given(raised(), closed()).when(rate(actor, 5)).raises(NotRequester)


@pytest.mark.parametrize("current", ["open", "in_progress", "on_hold"])
def test_a_ticket_can_be_rated_only_once_resolved_or_closed(current: str) -> None:
    history = [raised()] + ([] if current == "open" else [status(current, "open")])
    given(*history).when(rate(CUSTOMER, 5)).raises(InvalidState)


@pytest.mark.parametrize("rating", [0, 6, -1, True, False, 4.5, "5"])
def test_a_rating_is_a_whole_number_from_1_to_5_and_not_a_bool(rating: object) -> None:
    err = given(raised(), closed()).when(rate(CUSTOMER, rating)).raises(InvalidInput)
    assert err.field == "rating"


def test_a_later_rating_supersedes_an_earlier_one() -> None:
    history = [raised(), closed(), TicketRated(rating=2, comment="meh")]
    given(*history).when(rate(CUSTOMER, 5, "better now")).then(
        TicketRated(rating=5, comment="better now")
    )
    state = fold(timed([*history, TicketRated(rating=5, comment="better now")]))
    assert state is not None
    assert (state.rating, state.rating_comment) == (5, "better now")


# --- whose ticket ---------------------------------------------------------------------


OTHERS_COMMANDS: list[Command] = [
    PostMessage(actor=OTHER_CUSTOMER, now=NOW, message_id=9, body="me too"),
    CloseTicket(actor=OTHER_CUSTOMER, now=NOW),
    ReopenTicket(actor=OTHER_CUSTOMER, now=NOW, reason="x"),
    RateTicket(actor=OTHER_CUSTOMER, now=NOW, rating=1),
]


@pytest.mark.parametrize("command", OTHERS_COMMANDS, ids=lambda c: type(c).__name__)
def test_a_customer_may_not_touch_another_customers_ticket(command: Command) -> None:
    err = given(raised(), status("resolved", "open")).when(command).raises(NotRequester)
    assert err.kind == "forbidden"


AUDITOR_COMMANDS: list[Command] = [
    PostMessage(actor=AUDITOR, now=NOW, message_id=9, body="hm"),
    AssignTicket(actor=AUDITOR, now=NOW, assignee="agent-1"),
    ChangeStatus(actor=AUDITOR, now=NOW, status="resolved"),
    CloseTicket(actor=AUDITOR, now=NOW),
    ReopenTicket(actor=AUDITOR, now=NOW, reason="x"),
    RateTicket(actor=AUDITOR, now=NOW, rating=3),
    RecordSlaBreach(actor=AUDITOR, now=NOW, target="resolution"),
]


@pytest.mark.parametrize("command", AUDITOR_COMMANDS, ids=lambda c: type(c).__name__)
def test_auditors_issue_no_commands(command: Command) -> None:
    given(raised()).when(command).raises(Forbidden)


# --- SLA breaches ---------------------------------------------------------------------

MEDIUM = POLICY["medium"]
FIRST_DUE = T0 + timedelta(seconds=MEDIUM.first_response_s)


def breach(target: str, now: object, actor: Actor = SYSTEM) -> RecordSlaBreach:
    return RecordSlaBreach(actor=actor, now=now, target=target)  # type: ignore[arg-type]


def test_the_system_records_a_passed_first_response_target() -> None:
    given(raised()).when(breach("first_response", FIRST_DUE)).then(
        SlaBreached(target="first_response", due_at=FIRST_DUE)
    )


def test_no_breach_is_recorded_before_the_due_time() -> None:
    given(raised()).when(breach("first_response", FIRST_DUE - timedelta(seconds=1))).then()


@pytest.mark.parametrize("actor", [AGENT, ADMIN, CUSTOMER], ids=["agent", "admin", "customer"])
def test_only_the_system_records_sla_breaches(actor: Actor) -> None:
    given(raised()).when(breach("first_response", FIRST_DUE, actor)).raises(Forbidden)


def test_a_breach_is_recorded_only_once_per_target() -> None:
    later = FIRST_DUE + timedelta(days=30)
    given(raised(), SlaBreached(target="first_response", due_at=FIRST_DUE)).when(
        breach("first_response", later)
    ).then()
    # ... while the other target can still breach once
    given(raised(), SlaBreached(target="first_response", due_at=FIRST_DUE)).when(
        breach("resolution", later)
    ).then(SlaBreached(target="resolution", due_at=T0 + timedelta(seconds=MEDIUM.resolution_s)))


def test_a_met_first_response_is_never_breached() -> None:
    given(raised(), message(AGENT)).when(breach("first_response", FIRST_DUE)).then()


@pytest.mark.parametrize("final", ["resolved", "closed"])
def test_a_resolved_or_closed_ticket_is_never_breached(final: str) -> None:
    ending = status("resolved", "open") if final == "resolved" else closed()
    later = T0 + timedelta(days=365)
    given(raised(), ending).when(breach("resolution", later)).then()
    given(raised(), ending).when(breach("first_response", later)).then()


def test_the_system_may_do_nothing_but_record_breaches() -> None:
    given(raised()).when(post(SYSTEM)).raises(Forbidden)
    given(raised()).when(assign(SYSTEM, "agent-1")).raises(Forbidden)


def test_the_helpers_build_distinct_actors() -> None:
    # guards the fixtures above: a spec with identical actors would prove nothing
    assert len({a.id for a in (CUSTOMER, OTHER_CUSTOMER, AGENT, AGENT_2, ADMIN, AUDITOR)}) == 6
