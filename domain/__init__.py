"""The pure ticket domain: events, commands, decide/evolve, SLA arithmetic. No IO here."""
