"""moto server for the local bed, with fills for moto gaps the production code meets.

Each fill makes moto behave as EC2 documents; none changes what a test can observe beyond that.
Started by bed.sh exactly like `moto_server` (same arguments).

- CreateImage with a `snapshot` TagSpecification: EC2 tags the new image's snapshots; moto 5.2.5
  raises NotImplementedError (HTTP 500). The switch saga tags its snapshots at creation because its
  rollback may delete only snapshots carrying its tag (IAM condition), so the bed must accept it.
"""

from moto.ec2.models.amis import AmiBackend
from moto.server import main

_create_image = AmiBackend.create_image


def _create_image_with_snapshot_tags(self, instance_id, name, description, tag_specifications):
    snapshot_tags = {
        tag["Key"]: tag["Value"]
        for spec in tag_specifications
        if spec.get("ResourceType") == "snapshot"
        for tag in spec.get("Tags", [])
    }
    others = [spec for spec in tag_specifications if spec.get("ResourceType") != "snapshot"]
    ami = _create_image(self, instance_id, name, description, tag_specifications=others)
    if snapshot_tags:
        self.create_tags([ami.ebs_snapshot.id], snapshot_tags)
    return ami


AmiBackend.create_image = _create_image_with_snapshot_tags

if __name__ == "__main__":
    main()
