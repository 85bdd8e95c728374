-- The resident's answer is kept apart from what the line reports (status callbacks, answering
-- machine detection): an answer always wins over them, and the most urgent answer of a call
-- wins over a milder one ("1" then "도와주세요" is help). Whoever acts on a call's outcome
-- (an alert's ladder, a routine round) records what it acted on (`acted_on`); a help-class
-- answer that arrives after that (the watchdog fired, the call had already ended as unclear)
-- is reported to alerts by intake (`answer_reported_at`), so it wakes someone whenever it comes.
ALTER TABLE anbu.calls
    ADD COLUMN answer             text CHECK (answer IN ('ok', 'help', 'unwell', 'emergency',
                                                         'unclear', 'call_back_later')),
    ADD COLUMN acted_on           text,
    ADD COLUMN answer_reported_at timestamptz;

-- Finished calls from before this migration were acted on by the old path: none of them is
-- reported late. Calls still queued or ringing are left open, so help said on them counts.
UPDATE anbu.calls SET acted_on = outcome, answer_reported_at = updated_at
 WHERE outcome IS NOT NULL;

CREATE INDEX calls_late_answers ON anbu.calls (id)
    WHERE answer IN ('help', 'unwell', 'emergency') AND answer_reported_at IS NULL;
