# The few nixpkgs lib functions jaros' flake uses, with nixpkgs' semantics.
let
  lib = {
    genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
    optionalAttrs = cond: attrs: if cond then attrs else { };
    hasPrefix = prefix: s: builtins.substring 0 (builtins.stringLength prefix) s == prefix;
    concatMapStrings = f: list: builtins.concatStringsSep "" (map f list);
    versionAtLeast = v1: v2: builtins.compareVersions v1 v2 >= 0;
    assertMsg = pred: msg: pred || builtins.throw msg;
    licenses.asl20 = { spdxId = "Apache-2.0"; shortName = "asl20"; };
    platforms.unix = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
  };
in
lib
