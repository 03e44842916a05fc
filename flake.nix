{
  description = "Jaros: a zero-infrastructure runtime that makes agent systems reproducible, testable and capability-safe";

  # The only input. A NixOS release whose rustc (1.91) meets `rust-version` in
  # Cargo.toml; flake.lock pins the exact revision (`nix flake lock` writes it).
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;

      cargoToml = builtins.fromTOML (builtins.readFile ./Cargo.toml);
      pname = cargoToml.package.name;
      version = cargoToml.package.version;
      # A build from the store has no .git: build.rs reads the commit from here.
      commit = if self ? rev then builtins.substring 0 12 self.rev else "unknown";
      sourceUrl = cargoToml.package.repository or "unknown";

      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});

      # The source without build output or local state, so an unrelated file in
      # target/ never changes the derivation.
      src = builtins.path {
        name = "${pname}-source";
        path = ./.;
        filter = path: type:
          let base = baseNameOf path;
          in !(type == "directory" && builtins.elem base [ "target" ".git" ".jaros-data" ])
            && !(lib.hasPrefix "result" base);
      };

      # The example hive is the repository root: whichever of these exist.
      hiveParts = builtins.filter (part: builtins.pathExists (./. + "/${part}"))
        [ "manifests" "agents" "tools" "evals" ];

      # One image config for both images: scripts/oci-build.sh writes the same
      # (scripts/packaging-check.sh compares them).
      imageConfig = {
        User = "65532:65532";
        Entrypoint = [ "/bin/jaros" "serve" ];
        Env = [ "PATH=/bin" "JAROS_HIVE=/hive" "JAROS_DATA_DIR=/data" ];
        WorkingDir = "/data";
        Volumes = { "/data" = { }; };
        StopSignal = "SIGTERM";
        Labels = {
          "org.opencontainers.image.title" = "jaros";
          "org.opencontainers.image.description" = "Jaros node: reproducible, capability-safe agent runtime";
          "org.opencontainers.image.version" = version;
          "org.opencontainers.image.revision" = commit;
          "org.opencontainers.image.source" = sourceUrl;
          "org.opencontainers.image.licenses" = "Apache-2.0";
        };
      };

      mkJaros = pkgs:
        assert lib.assertMsg (lib.versionAtLeast pkgs.rustc.version (cargoToml.package.rust-version or "0"))
          "nixpkgs' rustc ${pkgs.rustc.version} is older than rust-version in Cargo.toml";
        pkgs.rustPlatform.buildRustPackage {
          inherit pname version src;
          cargoLock.lockFile = ./Cargo.lock;
          env.JAROS_GIT_COMMIT = commit;
          # The test suite runs in checks.tests; a plain build stays quick.
          doCheck = false;
          meta = {
            description = cargoToml.package.description;
            license = lib.licenses.asl20;
            mainProgram = "jaros";
            platforms = lib.platforms.unix;
          };
        };

      mkHive = pkgs: pkgs.runCommand "${pname}-example-hive" { } ''
        mkdir -p $out
        ${lib.concatMapStrings (part: "cp -r ${src}/${part} $out/${part}\n") hiveParts}
      '';

      mkImage = pkgs: jaros:
        let hive = mkHive pkgs;
        in pkgs.dockerTools.buildLayeredImage {
          name = pname;
          tag = version;
          contents = [ jaros ];
          extraCommands = ''
            mkdir -p hive etc tmp
            cp -r ${hive}/. hive/
            chmod -R u+w hive
            chmod 1777 tmp
            printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'jaros:x:65532:65532:jaros:/data:/sbin/nologin' > etc/passwd
            printf '%s\n' 'root:x:0:' 'jaros:x:65532:' > etc/group
          '';
          # Runs under fakeroot, so the owner lands in the layer: /data belongs to
          # the node's user and a fresh named volume inherits it.
          fakeRootCommands = ''
            mkdir -p data
            chown 65532:65532 data
          '';
          config = imageConfig;
        };

      # `nix run`: a node on the embedded example hive, written once by `jaros init`
      # unless JAROS_HIVE names another.
      mkNodeApp = pkgs: jaros: pkgs.writeShellApplication {
        name = "jaros-node";
        runtimeInputs = [ jaros ];
        text = ''
          hive="''${JAROS_HIVE:-''${XDG_DATA_HOME:-$HOME/.local/share}/jaros/example-hive}"
          if [ ! -d "$hive/manifests" ]; then
            jaros init "$hive"
          fi
          export JAROS_HIVE="$hive"
          exec jaros serve "$@"
        '';
      };
    in
    {
      packages = forAllSystems (pkgs:
        let jaros = mkJaros pkgs;
        in { default = jaros; jaros = jaros; }
          // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux { oci = mkImage pkgs jaros; });

      apps = forAllSystems (pkgs:
        let jaros = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        in {
          default = { type = "app"; program = "${mkNodeApp pkgs jaros}/bin/jaros-node"; };
          jaros = { type = "app"; program = "${jaros}/bin/jaros"; };
        });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.stdenv.hostPlatform.system}.default ];
          packages = [ pkgs.clippy pkgs.rustfmt pkgs.rust-analyzer pkgs.cargo-nextest ];
        };
      });

      checks = forAllSystems (pkgs:
        let
          jaros = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
          hive = mkHive pkgs;
        in
        {
          build = jaros;
          tests = jaros.overrideAttrs (_: { doCheck = true; });
          fmt = pkgs.runCommand "${pname}-fmt" { nativeBuildInputs = [ pkgs.rustfmt pkgs.findutils ]; } ''
            cd ${src}
            find . -name '*.rs' -not -path './target/*' -exec rustfmt --check --edition 2021 {} +
            touch $out
          '';
        }
        // lib.optionalAttrs (builtins.elem "manifests" hiveParts) {
          validate = pkgs.runCommand "${pname}-validate-example" { nativeBuildInputs = [ jaros ]; } ''
            jaros validate ${hive}
            touch $out
          '';
        }
        // lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux {
          oci = self.packages.${pkgs.stdenv.hostPlatform.system}.oci;
        });

      formatter = forAllSystems (pkgs: pkgs.nixpkgs-fmt);
    };
}
