"""A command round trip through the real event store."""

from domain.events import Actor
from services.commands import CommandService, Context

CUSTOMER = Actor(id="cust-1", role="customer", name="Cus")
AGENT = Actor(id="agent-1", role="agent", name="Ag")


async def test_raise_message_close_round_trip(service: CommandService) -> None:
    raised = await service.raise_ticket(
        Context(actor=CUSTOMER), subject="Printer", description="It is on fire", category_id=1
    )
    tid = raised.ticket.id
    assert raised.ticket.status == "open" and raised.version == 1
    msg = await service.post_message(Context(actor=AGENT), tid, body="On it")
    assert msg.ticket.sla.first_response_at is not None
    closed = await service.close(Context(actor=CUSTOMER), tid, resolution="fixed")
    assert closed.ticket.status == "closed" and closed.version == 3
    state, events = await service.load(tid)
    assert state == closed.ticket
    assert [e.version for e in events] == [1, 2, 3]
