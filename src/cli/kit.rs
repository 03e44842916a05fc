//! The kit for coding agents that `jaros init` writes into a hive:
//! `AGENTS.md` at its root (the mental model in a page and the loop to
//! follow) and `agent-kit/` beside it (one short skill per artifact, and the
//! manifest reference `jaros docs` generates). Every example in the skills
//! is a file a test writes into a hive, validates and evaluates.

/// The kit's hand-written files: path in the hive, content.
pub const FILES: &[(&str, &[u8])] = &[
    ("AGENTS.md", include_bytes!("../../agent-kit/AGENTS.md")),
    (
        "agent-kit/skills/agent.md",
        include_bytes!("../../agent-kit/skills/agent.md"),
    ),
    (
        "agent-kit/skills/role.md",
        include_bytes!("../../agent-kit/skills/role.md"),
    ),
    (
        "agent-kit/skills/tool.md",
        include_bytes!("../../agent-kit/skills/tool.md"),
    ),
    (
        "agent-kit/skills/mcp-tool.md",
        include_bytes!("../../agent-kit/skills/mcp-tool.md"),
    ),
    (
        "agent-kit/skills/schedule.md",
        include_bytes!("../../agent-kit/skills/schedule.md"),
    ),
    (
        "agent-kit/skills/eval.md",
        include_bytes!("../../agent-kit/skills/eval.md"),
    ),
    (
        "agent-kit/skills/approval.md",
        include_bytes!("../../agent-kit/skills/approval.md"),
    ),
];
