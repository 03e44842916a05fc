{
  # A stand-in for nixpkgs, for checking jaros' flake offline:
  #   nix flake check --override-input nixpkgs path:./tests/nix/nixpkgs ...
  # It has the attributes flake.nix uses, with the same names and argument
  # shapes, and asserts what the real functions would need (a Cargo.lock that
  # exists, an image config with an entrypoint, ...). Its "builds" only write a
  # JSON record of their arguments, so a passing check proves the outputs exist
  # and are wired, not that jaros compiles under Nix.
  description = "Stand-in nixpkgs for offline checks of the jaros flake";

  outputs = { self }:
    let
      lib = import ./lib.nix;
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
    in
    {
      inherit lib;
      legacyPackages = lib.genAttrs systems (system: import ./pkgs.nix { inherit lib system; });
    };
}
