"""A fault battery for dptrain (issue 20): ranks that disagree, faults at every phase, pauses,
poisoned weights, resume, concurrent outputs, crafted files, first-hour edges."""
