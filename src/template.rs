//! The template language every template in a plan renders with (template
//! agents' decisions, verdict agents' mappings): minijinja with no clock, no
//! file loader and no randomness, bounded by fuel.
// No clock, environment or randomness here: see clippy.toml.
#![deny(clippy::disallowed_methods)]

/// Fuel for one template render: bounds loops so a template cannot hang a job.
pub const TEMPLATE_FUEL: u64 = 200_000;

/// A template environment with nothing but the template language: no clock,
/// no file loader, no randomness; bounded by fuel.
pub fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}
