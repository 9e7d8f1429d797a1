"""The planner and one fixer per area: from an audit's findings to a plan of changes."""
