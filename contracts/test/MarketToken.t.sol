// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

import {MarketToken} from "../src/MarketToken.sol";
import {EscrowTestBase} from "./EscrowTestBase.sol";

/// @notice The test stand-in token: only its owner mints.
contract MarketTokenTest is EscrowTestBase {
    function test_ownerMints() public {
        token.mint(tenant, 5);
        assertEq(token.balanceOf(tenant), 5, "minted");
        assertEq(token.totalSupply(), 5, "supply");
        assertEq(token.owner(), address(this), "the deployer owns it");
        assertEq(keccak256(bytes(token.symbol())), keccak256("mUSD"), "symbol");
    }

    function test_othersCannotMint() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        token.mint(stranger, 5);
    }

    function test_decimals() public view {
        uint8 decimals = token.decimals();
        assertTrue(decimals == 6 || decimals == 18, "6 (USDC-like) or 18 (wei-like)");
    }

    function test_newToken() public {
        MarketToken other = new MarketToken(stranger);
        assertEq(other.owner(), stranger, "owner_");
    }
}
