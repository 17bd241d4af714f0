"""orchestrator.rollout_queue.RolloutQueue on its own, with plain callables for `draw` and `submit` (no
Ray, no trainer): the order requests are submitted in, first and again after a rollout actor died,
and what a checkpoint reads from the queue. Expected values are written out."""
import pytest

from forkrl.orchestrator.rollout_queue import Request, RolloutQueue


class Roles:
    """A prompt stream of one row per draw (its state is the number of rows drawn so far) and a rollout
    that records every submission: (request index, its rows) in submit order, with handle "h<n>" for
    the n-th submission overall."""

    def __init__(self):
        self.position = 0
        self.submissions = 0
        self.submitted: list[tuple[int, list]] = []

    def draw(self):
        state = {"position": self.position}
        rows = [f"p{self.position}"]
        self.position += 1
        return rows, state

    def submit(self, req: Request):
        self.submitted.append((req.index, req.rows))
        self.submissions += 1
        return f"h{self.submissions - 1}"


def queue(next_index: int = 0):
    roles = Roles()
    return RolloutQueue(roles.draw, roles.submit, next_index=next_index), roles


def test_fill_submits_up_to_the_depth_in_index_order():
    q, roles = queue(next_index=7)
    q.fill(3)
    assert roles.submitted == [(7, ["p0"]), (8, ["p1"]), (9, ["p2"])]
    assert len(q) == 3 and q.next_index == 10
    q.fill(3)  # already full: nothing drawn, nothing submitted
    q.fill(1)  # below what is in flight: nothing either
    assert len(roles.submitted) == 3 and roles.position == 3
    first = q.pop()
    assert (first.index, first.rows, first.resume_state, first.handle) == (7, ["p0"], {"position": 0}, "h0")
    q.fill(3)  # one slot free: exactly one new request
    assert roles.submitted[3:] == [(10, ["p3"])] and len(q) == 3


def test_resubmit_sends_every_request_again_oldest_first():
    q, roles = queue()
    q.fill(3)
    roles.submitted.clear()
    q.resubmit()
    assert roles.submitted == [(0, ["p0"]), (1, ["p1"]), (2, ["p2"])]
    # each request now holds its new handle, and the queue still hands them out oldest first
    assert [(r.index, r.handle) for r in (q.pop(), q.pop(), q.pop())] == [(0, "h3"), (1, "h4"), (2, "h5")]
    assert roles.position == 3  # nothing drawn again


def test_resubmit_puts_the_popped_request_first():
    """The trainer popped request 0 and lost it with the actor: it goes in front of 1 and 2, and is
    the next one popped."""
    q, roles = queue()
    q.fill(3)
    lost = q.pop()
    roles.submitted.clear()
    q.resubmit(first=lost)
    assert roles.submitted == [(0, ["p0"]), (1, ["p1"]), (2, ["p2"])]
    assert len(q) == 3
    again = q.pop()
    assert again is lost and again.handle == "h3"
    assert [q.pop().index, q.pop().index] == [1, 2]


def test_resubmit_of_only_the_popped_request():
    q, roles = queue()
    q.fill(1)
    lost = q.pop()
    roles.submitted.clear()
    q.resubmit(first=lost)
    assert roles.submitted == [(0, ["p0"])] and len(q) == 1 and q.pop() is lost


def test_resume_point_is_the_oldest_request_in_flight():
    q, _ = queue(next_index=4)
    assert q.resume_point() is None
    q.fill(2)
    assert q.resume_point() == ({"position": 0}, 4)
    q.pop()
    assert q.resume_point() == ({"position": 1}, 5)


def test_clear_forgets_the_requests_but_not_the_index():
    q, roles = queue()
    q.fill(2)
    q.clear()
    assert len(q) == 0 and q.resume_point() is None and q.next_index == 2
    with pytest.raises(IndexError, match="no request in flight"):
        q.pop()
    q.resubmit()  # nothing in flight: nothing submitted
    assert len(roles.submitted) == 2
