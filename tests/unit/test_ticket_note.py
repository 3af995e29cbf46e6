"""The work note a requester's ticket gets when a run ends."""

from __future__ import annotations

from flows.runbook import ticket_note
from tasks.servicedesk import ticket_table


def test_a_completed_drill_note_names_outcome_verdict_figures_report_and_ui_link() -> None:
    note = ticket_note("Drill of globex", "r-1", "Completed",
                       None, {"verdict": "PASS", "rto_s": 812.04, "rpo_s": 41.0,
                              "report": {"pdf": "/srv/r.pdf", "html": "/srv/r.html"}},
                       "http://ui/runs/flow-run/r-1")
    assert note.splitlines() == ["DRaaS: Drill of globex - Completed (PASS)", "Run: r-1", "RTO 812.0 s, RPO 41.0 s",
                                 "Report (html): /srv/r.html", "Report (pdf): /srv/r.pdf",
                                 "Prefect: http://ui/runs/flow-run/r-1"]


def test_a_failed_run_note_names_the_cause_and_omits_what_it_does_not_know() -> None:
    note = ticket_note("Unplanned failover of acme", "r-2", "Failed", "VCenterDeadlineExceeded: no answer", {}, None)
    assert note.splitlines() == ["DRaaS: Unplanned failover of acme - Failed", "Run: r-2",
                                 "Cause: VCenterDeadlineExceeded: no answer"]


def test_change_numbers_go_to_change_requests_everything_else_to_incidents() -> None:
    assert ticket_table("CHG0030001") == "change_request"
    assert ticket_table(" chg1") == "change_request"
    assert ticket_table("INC0010001") == "incident"
    assert ticket_table("RITM0001") == "incident"
