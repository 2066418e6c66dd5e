# -*- mode: ruby -*-
# vi: set ft=ruby :
#
# The one VM definition both nodes share; each node's Vagrantfile names only
# what differs (name, IP, memory, vCPUs) and calls `define_node`, so a change
# to the box, the synced folder or the provisioning is made once.
#
# Relative paths below ("../..", "../provision.sh") are resolved by Vagrant
# against the directory of the Vagrantfile that calls this, not this file:
# each node's folder sits directly under vagrant/, so they mean the same for
# both.

def define_node(name:, ip:, memory_mb:, cpus:)
  Vagrant.configure("2") do |config|
    # Debian 12: hiera/data/os/Debian.yaml is the tested OS data
    # (hiera/data/os/RedHat.yaml exists for Rocky/CentOS boxes).
    config.vm.box = "debian/bookworm64"
    config.vm.hostname = name
    config.vm.network "private_network", ip: ip

    # The repository (manifests/, hiera/, vagrant/bin/agent) at /vagrant/agent.
    # rsync needs no guest additions, so the same line serves both providers.
    config.vm.synced_folder ".", "/vagrant", disabled: true
    config.vm.synced_folder "../..", "/vagrant/agent", type: "rsync",
      rsync__exclude: [".git/", "target/"]

    config.vm.provider "libvirt" do |lv|
      lv.memory = memory_mb
      lv.cpus = cpus
    end

    config.vm.provider "virtualbox" do |vb|
      vb.name = name
      vb.memory = memory_mb
      vb.cpus = cpus
    end

    config.vm.provision "shell", path: "../provision.sh", args: [name]
  end
end
