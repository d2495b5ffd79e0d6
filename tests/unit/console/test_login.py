"""The console's login dialog and ledger, sans-IO, on a clock the test moves by hand."""

from __future__ import annotations

import pytest

from firmware.config.schema import Console
from firmware.console.login import (
    LOGIN_PROMPT,
    PASSWORD_PROMPT,
    Check,
    LockedOut,
    LoggedIn,
    LoggedOut,
    LoginDialog,
    LoginFailed,
    LoginLedger,
    LoginRefused,
    LoginRules,
    Pause,
    Show,
    Stage,
)

RULES = LoginRules(attempts=3, lockout_s=300.0, idle_logout_s=900.0, read_only_without_login=False)


def shown(actions) -> str:
    return "\n".join(action.text for action in actions if isinstance(action, Show))


def to_password(dialog: LoginDialog, now: float, name: str = "tech") -> list:
    actions = dialog.entered(name, now)
    assert dialog.stage is Stage.PASSWORD, shown(actions)
    return actions


def try_password(dialog: LoginDialog, right: bool, now: float) -> list:
    """Name, password, and the check's outcome; the actions of the outcome."""
    to_password(dialog, now)
    assert dialog.entered("typed", now) == [Check("typed")]
    assert dialog.stage is Stage.CHECKING
    return dialog.checked(right, now)


def test_a_session_starts_at_login_and_a_right_password_logs_in():
    dialog = LoginDialog(LoginLedger(RULES))
    assert dialog.start(0.0) == []
    assert (dialog.stage, dialog.prompt, dialog.at_shell) == (Stage.NAME, LOGIN_PROMPT, False)
    assert dialog.entered("  ", 0.0) == [] and dialog.stage is Stage.NAME
    to_password(dialog, 0.0, "  alice ")
    assert dialog.prompt == PASSWORD_PROMPT and dialog.hides_input
    actions = dialog.entered("s3cret pass", 0.0)
    assert actions == [Check("s3cret pass")]
    assert dialog.ignores_input
    actions = dialog.checked(True, 0.1)
    assert actions[0] == LoggedIn("alice")
    assert "logged in" in shown(actions)
    assert dialog.logged_in and dialog.at_shell and dialog.prompt is None
    assert not dialog.hides_input and dialog.shows_logs


def test_a_wrong_password_pauses_for_a_growing_delay_then_asks_again():
    dialog = LoginDialog(LoginLedger(LoginRules(100, 300.0, 900.0, False)))
    delays = []
    now = 0.0
    for failure in range(1, 8):
        actions = try_password(dialog, False, now)
        assert actions[0] == LoginFailed(failure, actions[-1].seconds)
        assert shown(actions) == "login incorrect"
        assert isinstance(actions[-1], Pause)
        assert dialog.ignores_input and dialog.prompt == ""
        delays.append(actions[-1].seconds)
        now += actions[-1].seconds
        assert dialog.resumed() == []
        assert dialog.stage is Stage.NAME
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0]


def test_failures_in_a_row_lock_the_console_and_say_for_how_long():
    ledger = LoginLedger(RULES)
    dialog = LoginDialog(ledger)
    now = 0.0
    for _ in range(2):
        now += try_password(dialog, False, now)[-1].seconds
        dialog.resumed()
    actions = try_password(dialog, False, now)
    assert actions[0] == LockedOut(3, 300.0)
    assert shown(actions) == (
        "login incorrect\nconsole locked for 5m 00s: 3 failed logins in a row"
    )
    assert not any(isinstance(action, Pause) for action in actions)
    assert dialog.stage is Stage.NAME
    actions = dialog.entered("tech", now + 60)
    assert actions[0] == LoginRefused(240.0)
    assert shown(actions) == "console locked: try again in 4m 00s"
    assert dialog.stage is Stage.NAME  # no password is asked while locked


def test_the_right_password_during_a_lockout_is_refused_without_being_checked():
    ledger = LoginLedger(RULES)
    waiting = LoginDialog(ledger)  # a session left at Password:
    to_password(waiting, 0.0)
    other = LoginDialog(ledger)  # the line reconnected; failures there lock the console
    now = 0.0
    for _ in range(3):
        actions = try_password(other, False, now)
        if isinstance(actions[-1], Pause):
            now += actions[-1].seconds
            other.resumed()
    actions = waiting.entered("the right password", now + 1)
    assert not any(isinstance(action, Check) for action in actions)
    assert isinstance(actions[0], LoginRefused)
    assert "console locked" in shown(actions)
    assert not waiting.logged_in


def test_the_lockout_ends_and_the_count_starts_again():
    ledger = LoginLedger(RULES)
    dialog = LoginDialog(ledger)
    now = 0.0
    for _ in range(3):
        actions = try_password(dialog, False, now)
        if isinstance(actions[-1], Pause):
            now += actions[-1].seconds
            dialog.resumed()
    assert ledger.locked_for(now + 299.5) == pytest.approx(0.5)
    now += 300.0
    actions = try_password(dialog, False, now)
    assert actions[0] == LoginFailed(1, 1.0)  # one failure, not another lockout
    now += 1.0
    dialog.resumed()
    assert try_password(dialog, True, now)[0] == LoggedIn("tech")


def test_a_success_resets_the_count():
    ledger = LoginLedger(RULES)
    dialog = LoginDialog(ledger)
    now = 0.0
    for _ in range(2):
        now += try_password(dialog, False, now)[-1].seconds
        dialog.resumed()
    try_password(dialog, True, now)
    assert ledger.failures == 0
    dialog.logout()
    actions = try_password(dialog, False, now)
    assert actions[0] == LoginFailed(1, 1.0)


def test_a_new_session_keeps_the_lockout_and_the_pending_delay():
    ledger = LoginLedger(RULES)
    first = LoginDialog(ledger)
    pause = try_password(first, False, 10.0)[-1]
    second = LoginDialog(ledger)  # the serial line reconnected
    assert second.start(10.4) == [Pause(pytest.approx(pause.seconds - 0.4))]
    assert second.ignores_input
    for _ in range(2):
        second.resumed()
        actions = try_password(second, False, 20.0)
    assert isinstance(actions[0], LockedOut)
    third = LoginDialog(ledger)
    assert third.start(30.0) == []
    actions = third.entered("tech", 30.0)
    assert isinstance(actions[0], LoginRefused)


def test_idle_logs_out_only_a_logged_in_session():
    dialog = LoginDialog(LoginLedger(RULES))
    assert dialog.idle_after_s is None  # waiting at login: is no session to end
    to_password(dialog, 0.0)
    assert dialog.idle_after_s == 900.0  # a half-typed login is abandoned
    assert dialog.idle() == [] and dialog.stage is Stage.NAME
    try_password(dialog, True, 0.0)
    assert dialog.idle_after_s == 900.0
    actions = dialog.idle()
    assert actions[0] == LoggedOut("idle")
    assert shown(actions) == "logged out: no input for 15m 00s"
    assert dialog.stage is Stage.NAME and dialog.idle_after_s is None


def test_logout_and_its_answers():
    dialog = LoginDialog(LoginLedger(RULES))
    try_password(dialog, True, 0.0)
    assert shown(dialog.login(0.0)) == "already logged in (logout first)"
    actions = dialog.logout()
    assert actions[0] == LoggedOut("logout")
    assert shown(actions) == "logged out"
    assert not dialog.logged_in and not dialog.shows_logs


def test_read_only_without_login_starts_at_the_shell():
    rules = LoginRules(3, 300.0, 900.0, read_only_without_login=True)
    dialog = LoginDialog(LoginLedger(rules))
    assert dialog.stage is Stage.SHELL and dialog.at_shell and not dialog.logged_in
    assert dialog.prompt is None and dialog.shows_logs
    assert shown(dialog.logout()) == "not logged in"
    assert dialog.login(0.0) == [] and dialog.stage is Stage.NAME
    assert dialog.idle_after_s == 900.0
    assert dialog.interrupted() == [] and dialog.stage is Stage.SHELL
    dialog.login(0.0)
    to_password(dialog, 0.0)
    dialog.interrupted()
    assert dialog.stage is Stage.SHELL
    dialog.login(0.0)
    try_password(dialog, True, 0.0)
    dialog.logout()
    assert dialog.stage is Stage.SHELL


def test_a_lockout_in_read_only_mode_refuses_login_at_the_shell():
    rules = LoginRules(1, 60.0, 900.0, read_only_without_login=True)
    dialog = LoginDialog(LoginLedger(rules))
    dialog.login(0.0)
    assert isinstance(try_password(dialog, False, 0.0)[0], LockedOut)
    assert dialog.stage is Stage.SHELL
    actions = dialog.login(30.0)
    assert shown(actions) == "console locked: try again in 30s"
    assert dialog.stage is Stage.SHELL


def test_lines_out_of_turn_are_a_bug_of_the_caller():
    dialog = LoginDialog(LoginLedger(RULES))
    with pytest.raises(RuntimeError):
        dialog.checked(True, 0.0)
    try_password(dialog, True, 0.0)
    with pytest.raises(RuntimeError):
        dialog.entered("status", 0.0)


def test_a_check_never_shows_the_password():
    assert "hunter2" not in repr(Check("hunter2"))


def test_rules_come_from_the_console_settings():
    console = Console(
        password_hash="x",
        login_attempts=5,
        lockout="2h",
        idle_logout="30s",
        read_only_without_login=True,
    )
    rules = LoginRules.from_config(console)
    assert (rules.attempts, rules.lockout_s, rules.idle_logout_s) == (5, 7200.0, 30.0)
    assert rules.read_only_without_login
