# The offline stand-in for nixpkgs that notebooks/04-runtimes.ipynb points
# IPyRunner.nix_flake at. The default flake, a pinned nixpkgs revision, must be
# fetched from GitHub and its packages from a binary cache; this one builds on
# a machine with neither: its "interpreters" are store-path wrappers around
# the host's own python3, node and bash, and its one Python package,
# `greeting` 1.0.0, is a real store path holding pure Python.
# It has nixpkgs' shape: legacyPackages.<system>.{python3, python3Packages,
# nodejs, bash}, and python3.withPackages, which is all ipyrunner asks of a flake.
{
  description = "ipyrunner's offline demo flake (notebook 04)";

  outputs = { self }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forSystem = system:
        let
          wrapper = name: target: env: derivation {
            inherit name system;
            builder = "/bin/sh";
            args = [ "-c" ''
              /bin/mkdir -p $out/bin
              printf '#!/bin/sh\n%sexec %s "$@"\n' '${env}' '${target}' > $out/bin/${name}
              /bin/chmod +x $out/bin/${name}
            '' ];
          };
          greeting = derivation {
            inherit system;
            name = "python3-greeting-1.0.0";
            builder = "/bin/sh";
            args = [ "-c" ''
              /bin/mkdir -p $out/lib/site-packages/greeting
              printf 'VERSION = "1.0.0"\n\ndef greet(name):\n    return f"hello, {name}, from the nix store"\n' > $out/lib/site-packages/greeting/__init__.py
            '' ];
          } // { pname = "greeting"; version = "1.0.0"; };
          python3Packages = { inherit greeting; };
          mkPython = packages:
            let
              path = builtins.concatStringsSep ":" (map (p: "${p}/lib/site-packages") packages);
              env = if packages == [ ] then "" else "PYTHONPATH=${path} ";
            in
            wrapper "python3" "/usr/bin/python3" env // {
              withPackages = choose: mkPython (packages ++ choose python3Packages);
            };
        in
        {
          python3 = mkPython [ ];
          inherit python3Packages;
          nodejs = wrapper "node" "/usr/bin/node" "";
          bash = wrapper "bash" "/bin/bash" "";
        };
    in
    {
      legacyPackages = builtins.listToAttrs (map (system: { name = system; value = forSystem system; }) systems);
    };
}
