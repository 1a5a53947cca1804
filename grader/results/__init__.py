"""Results: feedback pages, LMS exports and hand-grading sheets, reports."""
