# Stand-in package set: each function checks its arguments like the real one
# would, then returns a derivation whose build writes those arguments as JSON.
{ lib, system }:
let
  isLinux = builtins.match ".*-linux" system != null;

  # A derivation that records `record`; `overrideAttrs` works as in nixpkgs.
  fake = name: record: extra:
    let
      drv = derivation {
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" "printf '%s\\n' \"$record\" > $out" ];
        record = builtins.toJSON record;
      };
    in
    drv // extra // {
      overrideAttrs = f: fake name (record // f record) extra;
    };

  tool = name: version: fake "${name}-${version}" { inherit name version; } {
    inherit version;
    pname = name;
  };

  require = cond: msg: if cond then true else builtins.throw "stand-in nixpkgs: ${msg}";
in
rec {
  stdenv.hostPlatform = {
    inherit system isLinux;
    isDarwin = !isLinux;
  };

  rustc = tool "rustc" "1.91.1";
  cargo = tool "cargo" "1.91.1";
  clippy = tool "clippy" "1.91.1";
  rustfmt = tool "rustfmt" "1.91.1";
  rust-analyzer = tool "rust-analyzer" "2025-11-24";
  cargo-nextest = tool "cargo-nextest" "0.9.108";
  findutils = tool "findutils" "4.10.0";
  nixpkgs-fmt = tool "nixpkgs-fmt" "1.3.0";

  rustPlatform.buildRustPackage = args:
    assert require (args ? pname && args ? version && args ? src) "buildRustPackage needs pname, version and src";
    assert require (args ? cargoLock && builtins.pathExists args.cargoLock.lockFile)
      "buildRustPackage needs cargoLock.lockFile pointing at a tracked Cargo.lock";
    assert require (builtins.pathExists "${args.src}/Cargo.toml") "src has no Cargo.toml";
    assert require (args.meta ? mainProgram) "meta.mainProgram is unset";
    fake "${args.pname}-${args.version}"
      {
        builder = "buildRustPackage";
        inherit (args) pname version;
        src = "${args.src}";
        lockFile = "${args.cargoLock.lockFile}";
        env = args.env or { };
        doCheck = args.doCheck or true;
      }
      { inherit (args) pname version meta; };

  dockerTools.buildLayeredImage = args:
    assert require isLinux "dockerTools.buildLayeredImage builds Linux images only";
    assert require (args ? name && args ? config) "buildLayeredImage needs name and config";
    assert require (args.config ? Entrypoint || args.config ? Cmd) "the image has neither Entrypoint nor Cmd";
    fake "docker-image-${args.name}.tar.gz"
      {
        builder = "buildLayeredImage";
        inherit (args) name config;
        tag = args.tag or "latest";
        contents = map toString (args.contents or [ ]);
        extraCommands = args.extraCommands or "";
        fakeRootCommands = args.fakeRootCommands or "";
      }
      {
        imageName = args.name;
        imageTag = args.tag or "latest";
        # Not in real nixpkgs: lets the offline check compare the config with
        # scripts/oci-build.sh.
        standInConfig = args.config;
      };

  runCommand = name: env: script:
    fake name { builder = "runCommand"; inherit script; inputs = map toString (env.nativeBuildInputs or [ ]); } { };

  writeShellApplication = { name, text, runtimeInputs ? [ ], ... }:
    assert require (builtins.match ".*#!.*" text == null) "writeShellApplication adds the shebang itself";
    fake name { builder = "writeShellApplication"; inherit text; runtimeInputs = map toString runtimeInputs; } { };

  mkShell = { inputsFrom ? [ ], packages ? [ ], ... }:
    fake "nix-shell" { builder = "mkShell"; inputsFrom = map toString inputsFrom; packages = map toString packages; } { };
}
